"""Logins under attack, against the real gateway process: guesses sent at once for one
name count as much as guesses in a row, a flood of made-up names from one address is
throttled before it costs memory, and at most a few password checks run at once."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from gateway import auth
from gateway.errors import Throttled

PASSWORD = "kahayan-112-benar"


def add_user(gateway, name, role="dispatcher", password=PASSWORD):
    r = httpx.post(
        gateway.url + "/api/v1/users",
        json={"name": name, "role": role, "password": password},
        headers=gateway.headers,
    )
    assert r.status_code == 201, r.text


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def attempts(gateway, bodies, at_once):
    """Send the login bodies with `at_once` in flight; their status codes, in order."""
    start = threading.Barrier(min(at_once, len(bodies)))

    def one(body):
        try:
            start.wait(10)
        except threading.BrokenBarrierError:
            pass
        return httpx.post(gateway.url + "/api/v1/login", json=body, timeout=60).status_code

    with ThreadPoolExecutor(at_once) as pool:
        return list(pool.map(one, bodies))


def test_guesses_sent_at_once_for_one_name_are_counted_before_they_are_checked(gateway):
    add_user(gateway, "dina")
    guesses = [{"username": "dina", "password": f"guess-{n:03d}"} for n in range(59)]
    guesses.insert(37, {"username": "dina", "password": PASSWORD})
    codes = attempts(gateway, guesses, 60)
    # at most 5 wrong guesses are checked (and the right one, if it was among the first)
    assert codes.count(401) <= auth.LOGIN_FAILURES_ALLOWED and codes.count(200) <= 1, codes
    assert codes.count(429) >= 60 - auth.LOGIN_FAILURES_ALLOWED - 1
    assert set(codes) <= {200, 401, 429}


def test_a_flood_of_made_up_names_neither_grows_memory_nor_stops_the_gateway(gateway):
    pid = gateway.proc.pid
    httpx.post(gateway.url + "/api/v1/login", json={"username": "dina", "password": "x"})  # in service
    before = rss_kib(pid)
    bodies = [{"username": f"nobody-{n}", "password": "x" * 40} for n in range(400)]
    codes = []
    for start in range(0, 400, 100):
        codes += attempts(gateway, bodies[start : start + 100], 100)
        assert httpx.get(gateway.url + "/api/v1/health", timeout=30).status_code == 200
    grown_mib = (rss_kib(pid) - before) / 1024
    print(f"gateway RSS {before / 1024:.0f} MiB before the flood, grew {grown_mib:.1f} MiB")
    assert grown_mib < 50, f"gateway RSS grew {grown_mib:.0f} MiB"
    assert codes.count(401) <= auth.ADDRESS_FAILURES_ALLOWED and codes.count(429) >= 380
    # the throttle is per name and per address, not for everyone: a token still works
    assert httpx.get(gateway.url + "/api/v1/units", headers=gateway.headers).status_code == 200


def test_a_throttled_name_waits_and_other_names_do_not(gateway):
    add_user(gateway, "sinta")
    for _ in range(auth.LOGIN_FAILURES_ALLOWED):
        r = httpx.post(gateway.url + "/api/v1/login", json={"username": "sinta", "password": "wrong-guess"})
        assert r.status_code == 401
    r = httpx.post(gateway.url + "/api/v1/login", json={"username": "sinta", "password": PASSWORD})
    assert r.status_code == 429 and r.json()["error"]["code"] == "throttled"
    other = httpx.post(gateway.url + "/api/v1/login", json={"username": "eko", "password": PASSWORD})
    assert other.status_code == 401  # another name is not throttled by sinta's


def test_the_throttle_books_an_attempt_before_checking_it():
    now = [1000.0]
    throttle = auth.Throttle(lambda: now[0])
    keys, allowed = ("name:dina", "address:10.0.0.1"), (2, 100)
    throttle.book(keys, allowed, "dina")
    throttle.book(keys, allowed, "dina")  # two under way, none settled yet
    try:
        throttle.book(keys, allowed, "dina")
        raise AssertionError("a third attempt got through while two were under way")
    except Throttled:
        pass
    throttle.settle(keys, None)  # never checked (the gateway was busy): counts for nothing
    throttle.book(keys, allowed, "dina")
    throttle.settle(keys, False)
    throttle.settle(keys, False)
    try:
        throttle.book(keys, allowed, "dina")
        raise AssertionError("a third guess after two failures got through")
    except Throttled as e:
        assert "try again in 60 s" in e.message
    now[0] += auth.LOGIN_THROTTLE_S
    throttle.book(keys, allowed, "dina")  # the pause is over
