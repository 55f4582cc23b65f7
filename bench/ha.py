"""PostgreSQL and two gateways on it, on real parts in one run (a broker, a PostgreSQL
server of the bench's own, gateway processes, paho publishers):

- gateway.ingest_reports_per_s_postgres: bench/gateway.py's ingest figure (a QoS 1
  backlog drained, each report acknowledged after its commit) on PostgreSQL;
- gateway.ingest_ratio_postgres_vs_sqlite: that over the same figure on SQLite, the two
  measured in turns, ROUNDS of each, each figure the best of its engine's runs (the
  other work on this shared machine only ever slows a run down);
- ha.failover_s: the worst of KILLS SIGKILLs of the leading gateway, each the time from
  the kill to a press published right after it being stored and read back through the
  standby's API (the standby took the lock and the MQTT session, the broker redelivered,
  it committed), while units report and press;
- ha.stream_lag_ms_p99: a press published over MQTT to its event on the standby's live
  stream (SSE), p99 of PRESSES; ha.stream_lag_extra_ms_p99: per press, the standby's
  event less the leader's (what the NOTIFY and the standby's read add);
- sizing (docs/sizing.md): the CPU the leader, the standby and PostgreSQL take with
  SIZING_UNITS units reporting every 5 s and every 1 s, and the bytes a position and a
  press take in PostgreSQL (table and indexes).

Every press, position and failover runs under the province-wide load: SIZING_UNITS
units reporting every REPORT_S.
"""

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

from provisioning.mosquitto import Mosquitto
from provisioning.postgres import start_primary
from simulators.gateway_process import GatewayProcess, wait_until

from .gateway import Load, client, gateway_rate

ROUNDS = 5  # ingest runs of each engine, in turns
KILLS = 5
PRESSES = 200  # for the stream lag, one every PRESS_GAP_S
PRESS_GAP_S = 0.05
SIZING_UNITS = [f"pr-{i:03d}" for i in range(600)]  # 15 regencies, 600 units
# Each unit reports this often: 120 reports/s. A planning figure, above what the firmware
# sends: its reports are adaptive (reporter.py: moving, at least every 30 s and more
# often on turns, never more than once a second; stopped, every 120 s).
REPORT_S = 5.0
FAST_REPORT_S = 1.0  # the firmware's fastest (report_min_period_s)
CPU_WINDOW_S = 20.0
FAILOVER_TARGET_S = 10.0
STREAM_TARGET_MS = 100.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def new_database(pg, name):
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        conn.execute(f"create database {name}")
    return pg.url(name)


def ingest_rates(port, pg, work):
    """ROUNDS drains of the same backlog by a gateway on SQLite and one on PostgreSQL,
    in turns (each on a fresh database), so both see the machine as it is then."""
    rates = {"sqlite": [], "postgresql": []}
    for r in range(ROUNDS):
        for kind in ("sqlite", "postgresql"):
            rate = one_rate(port, pg, work / f"{kind}-{r}", f"ingest_{r}" if kind == "postgresql" else "")
            rates[kind].append(rate)
            print(f"# ingest {kind}: {rate:.0f} reports/s", file=sys.stderr, flush=True)
    return rates


def one_rate(port, pg, work, database):
    """gateway_rate on a fresh SQLite database in `work`, or a fresh PostgreSQL `database`;
    once more if registering the units fails. Seen once in some 35 gateway starts: a 500
    from POST /api/v1/units on SQLite; the log's end goes to stderr, for its cause."""
    for attempt in (1, 2):
        folder = work.with_name(f"{work.name}-{attempt}")
        url = new_database(pg, f"{database}_{attempt}") if database else ""
        try:
            gw, rate = gateway_rate(port, folder, url)
        except RuntimeError as e:
            if attempt == 2:
                raise
            log = (folder / "gateway.log").read_text(errors="replace")[-3000:]
            print(f"# ingest: {e}; once more. The gateway's log ends:\n{log}", file=sys.stderr, flush=True)
            continue
        gw.stop()
        return rate


def bytes_per_row(url, table):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"vacuum analyze {table}")
        size, rows = conn.execute(
            f"select pg_total_relation_size('{table}'), count(*) from {table}"
        ).fetchone()
    return size / rows, rows


# Presses, as a unit sends them (protocol: status)
class Presser:
    """A unit's status presses, QoS 1, each with a press time of its own (`since`): the
    key changes at each, so each changes the unit's status and makes a stream event."""

    def __init__(self, port, unit_id, boot=1):
        self.unit_id, self.boot, self.seq = unit_id, boot, 0
        self.pub = client(port, f"bench-{unit_id}-{time.monotonic_ns()}")
        self.pub.loop_start()

    def press(self):
        """Publish one press now; returns (seq, its press time as the stream shows it)."""
        self.seq += 1
        now = time.time()
        t, ms = int(now), int(now % 1 * 1000)
        msg = {
            "_type": "status",
            "boot": self.boot,
            "seq": self.seq,
            "key": (1, 3, 4, 9)[self.seq % 4],
            "t": t,
            "ms": ms,
            "sent": t,
        }
        self.pub.publish(f"siaga/{self.unit_id}/status", json.dumps(msg), qos=1)
        return self.seq, t + ms / 1000

    def close(self):
        self.pub.loop_stop()
        self.pub.disconnect()


class Background(threading.Thread):
    """A unit pressing every `every` s until stopped (the presses of the failover runs)."""

    def __init__(self, port, unit_id, every=0.25):
        super().__init__(daemon=True)
        self.presser, self.every, self.stop = Presser(port, unit_id), every, threading.Event()

    def run(self):
        while not self.stop.wait(self.every):
            self.presser.press()
        self.presser.close()


class StreamWatch(threading.Thread):
    """A dispatcher's live stream on `gw`: when (perf_counter) each status event of `unit`
    arrived, by its press time."""

    def __init__(self, gw, unit):
        super().__init__(daemon=True)
        self.gw, self.unit = gw, unit
        self.seen, self.ready = {}, threading.Event()

    def run(self):
        needle = f'"unit_id": "{self.unit}"'
        try:
            with httpx.stream(
                "GET", self.gw.url + "/api/v1/stream", headers=self.gw.headers, timeout=60
            ) as resp:
                self.ready.set()
                for line in resp.iter_lines():
                    if line.startswith("data: ") and needle in line:
                        status = json.loads(line[6:])["status"]
                        if status:
                            self.seen.setdefault(round(status["since"], 3), time.perf_counter())
        except httpx.HTTPError:
            pass  # the gateway stopped at the end of the run


def role(gw):
    """leader, standby, or None while it does not answer (starting, killed). Read from a
    degraded gateway's health too (503: a problem such as the broker lost for a while)."""
    try:
        return httpx.get(gw.url + "/api/v1/health", timeout=5).json().get("role")
    except (httpx.HTTPError, ValueError):
        return None


def leader_of(gws, timeout=20):
    """The gateway that leads, once one does."""
    return wait_until(
        lambda: next((gw for gw in gws if role(gw) == "leader"), None), timeout, 0.1, "a leader"
    )


def register(gw, unit_ids):
    with httpx.Client(base_url=gw.url, headers=gw.headers, timeout=10) as http:
        for unit_id in unit_ids:
            body = {"unit_id": unit_id, "kind": "ambulance", "callsign": unit_id.upper()}
            reply = http.post("/api/v1/units", json=body)
            if reply.status_code != 201:
                raise RuntimeError(f"registering {unit_id}: {reply.status_code} {reply.text}")


def p99(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))]


def stream_lag(leader, standby, port):
    """PRESSES presses, each from its publish to its event on the leader's stream and on
    the standby's: (standby's delays, standby less leader per press), in ms."""
    watches = [StreamWatch(gw, "ha-stream") for gw in (leader, standby)]
    for w in watches:
        w.start()
        if not w.ready.wait(10):
            raise RuntimeError("a live stream did not open")
    presser = Presser(port, "ha-stream")
    sent = {}
    for _ in range(PRESSES):
        t = time.perf_counter()
        sent[round(presser.press()[1], 3)] = t
        time.sleep(PRESS_GAP_S)
    last = max(sent)  # a stream carries the unit's state: presses committed together show as the last
    wait_until(lambda: all(last in w.seen for w in watches), 30, 0.1, "the last press on both streams")
    presser.close()
    on_leader, on_standby = (w.seen for w in watches)
    both = [s for s in sent if s in on_leader and s in on_standby]
    print(f"# stream: {len(both)} of {PRESSES} presses seen as events on both streams", file=sys.stderr)
    if len(both) < PRESSES * 0.5:  # enough for a p99; fewer: something is wrong, not the load
        raise RuntimeError(f"only {len(both)} of {PRESSES} presses reached both streams")
    standby_ms = [(on_standby[s] - sent[s]) * 1000 for s in both]
    extra_ms = [(on_standby[s] - on_leader[s]) * 1000 for s in both]
    leader_ms = [(on_leader[s] - sent[s]) * 1000 for s in both]
    print(
        f"# stream: leader p99 {p99(leader_ms):.1f} ms, standby p99 {p99(standby_ms):.1f} ms", file=sys.stderr
    )
    return standby_ms, extra_ms


def failovers(gws, port):
    """KILLS times: SIGKILL the leader, publish a press at once from a unit of its own,
    and time from the kill to that press read back through the standby's API; then
    start the killed one again, as the standby. (times, times the standby led)."""
    marker = Presser(port, "ha-mark")
    took, led = [], []
    with httpx.Client(headers=gws[0].headers, timeout=5) as http:
        for _ in range(KILLS):
            leader = leader_of(gws)
            standby = gws[1] if leader is gws[0] else gws[0]
            time.sleep(2)  # steady: units reporting and pressing, the standby following
            killed_at = time.perf_counter()
            leader.kill()
            seq, _ = marker.press()
            history = standby.url + "/api/v1/units/ha-mark/statuses?limit=5"
            leading_at = None
            while True:
                now = time.perf_counter()
                if now - killed_at > 3 * FAILOVER_TARGET_S:
                    raise RuntimeError(
                        f"failover: the press sent after the kill not stored in {now - killed_at:.0f} s"
                    )
                if leading_at is None and role(standby) == "leader":
                    leading_at = now
                reply = http.get(history)
                if reply.status_code == 200 and any(s["seq"] == seq for s in reply.json()):
                    took.append(now - killed_at)
                    led.append((leading_at or now) - killed_at)
                    print(
                        f"# failover {took[-1]:.2f} s (leading after {led[-1]:.2f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                    break
                time.sleep(0.02)
            leader.start()  # back, as the standby
            wait_until(lambda gw=leader: role(gw) == "standby", 20, 0.1, "the restarted gateway to stand by")
    marker.close()
    return took, led


def crew_presses(gw, unit="ha-press"):
    """The sequence numbers of the unit's presses `gw` has stored."""
    rows = gw.get(f"/api/v1/units/{unit}/statuses?limit=10000")[1]
    return [s["seq"] for s in rows if s["source"] == "crew"]


def cpu_ticks(pid, children=False):
    """utime + stime of a process (/proc/PID/stat), with its reaped children's if asked."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks + (int(fields[13]) + int(fields[14]) if children else 0)


def postgres_ticks(postmaster):
    """The server's CPU: the postmaster with its reaped children, and each live child."""
    total = cpu_ticks(postmaster, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[1] == str(postmaster):
                total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


def cpu_shares(leader, standby, pg, seconds=CPU_WINDOW_S):
    """Percent of one core each of leader, standby and PostgreSQL took over `seconds`."""
    readers = (
        lambda: cpu_ticks(leader.proc.pid),
        lambda: cpu_ticks(standby.proc.pid),
        lambda: postgres_ticks(pg.proc.pid),
    )
    t0, before = time.perf_counter(), [read() for read in readers]
    time.sleep(seconds)
    t1, after = time.perf_counter(), [read() for read in readers]
    return [round((a - b) / CLOCK_TICKS / (t1 - t0) * 100, 1) for a, b in zip(after, before, strict=True)]


def accepted(gw):
    return httpx.get(gw.url + "/api/v1/health", timeout=5).json()["accepted"]


def wal_lsn(url):
    with psycopg.connect(url) as conn:
        return conn.execute("select pg_current_wal_lsn()").fetchone()[0]


def sizing(leader, standby, pg, url, port, load):
    """At SIZING_UNITS units every REPORT_S (the load running) and every FAST_REPORT_S:
    the reports/s stored, the CPU of leader, standby and PostgreSQL, and the WAL written
    per report; each window checked to have stored what was sent."""
    out = {}
    for every in (REPORT_S, FAST_REPORT_S):
        load = reload(load, port, every)
        time.sleep(3)  # steady
        a0, s0, w0 = accepted(leader), load.sent, wal_lsn(url)
        shares = cpu_shares(leader, standby, pg)
        a1, s1, w1 = accepted(leader), load.sent, wal_lsn(url)
        if a1 - a0 < 0.9 * (s1 - s0):
            raise RuntimeError(f"sizing: {a1 - a0} reports stored of {s1 - s0} sent in the window")
        with psycopg.connect(url) as conn:
            wal = conn.execute("select pg_wal_lsn_diff(%s, %s)", [w1, w0]).fetchone()[0]
        out[every] = shares, (a1 - a0) / CPU_WINDOW_S, float(wal) / (a1 - a0)
        print(
            f"# every {every} s: {out[every][1]:.0f} reports/s stored, CPU % leader, standby,"
            f" postgres {shares}, WAL {out[every][2]:.0f} bytes/report",
            file=sys.stderr,
            flush=True,
        )
    return out, load


def reload(load, port, every):
    """`load` if its units report every `every` s, else a new one that does (going on
    from its sequence numbers)."""
    rate = len(SIZING_UNITS) / every
    if load is not None and load.rate == rate:
        return load
    seq = 1
    if load is not None:
        load.stop.set()
        load.join(5)
        seq = load.seq
    load = Load(port, rate, SIZING_UNITS, seq)
    load.start()
    return load


def ha_pair(port, pg, work):
    url = new_database(pg, "ha")
    client_id = f"bench-ha-{time.monotonic_ns()}"
    gws = [GatewayProcess(work / name, port, client_id=client_id, database_url=url) for name in ("a", "b")]
    for gw in gws:
        gw.start()
    leader = leader_of(gws)
    standby = gws[1] if leader is gws[0] else gws[0]
    wait_until(lambda: role(standby) == "standby", 20, 0.1, "the standby")
    return url, gws, leader, standby


def figures():
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        pg = start_primary(db=None)
        gws = []
        try:
            rates = ingest_rates(broker.port, pg, Path(tmp))
            url, gws, leader, standby = ha_pair(broker.port, pg, Path(tmp))
            register(leader, [*SIZING_UNITS, "ha-stream", "ha-press", "ha-mark"])
            sized, load = sizing(leader, standby, pg, url, broker.port, reload(None, broker.port, REPORT_S))
            load = reload(load, broker.port, REPORT_S)
            time.sleep(3)
            standby_ms, extra_ms = stream_lag(leader, standby, broker.port)
            presses = Background(broker.port, "ha-press")
            presses.start()
            took, led = failovers(gws, broker.port)
            presses.stop.set()
            presses.join(5)
            load.stop.set()
            load.join(5)
            survivor = leader_of(gws)
            pressed = presses.presser.seq
            wait_until(lambda: len(crew_presses(survivor)) >= pressed, 20, 0.2, "every background press")
            stored = crew_presses(survivor)
            if sorted(stored) != list(range(1, pressed + 1)):
                raise RuntimeError(
                    f"failover: {len(stored)} presses stored ({len(set(stored))} distinct) of {pressed}"
                )
            position_bytes, position_rows = bytes_per_row(url, "positions")
            press_bytes, press_rows = bytes_per_row(url, "status_events")
        finally:
            for gw in gws:
                gw.stop()
            pg.remove()
            broker.stop()
    sqlite, postgres = (max(rates[k]) for k in ("sqlite", "postgresql"))
    print(
        f"# ingest reports/s, sqlite {[round(r) for r in rates['sqlite']]}"
        f" postgresql {[round(r) for r in rates['postgresql']]}",
        file=sys.stderr,
    )
    print(
        f"# failover s {[round(t, 2) for t in took]}; standby leading after {[round(t, 2) for t in led]}",
        file=sys.stderr,
    )
    print(
        f"# {pressed} background presses, each stored once; bytes per row from {position_rows}"
        f" positions, {press_rows} presses",
        file=sys.stderr,
    )
    ratio = postgres / sqlite
    figures = [
        ("gateway.ingest_reports_per_s_postgres", round(postgres), "reports/s"),
        ("gateway.ingest_ratio_postgres_vs_sqlite", round(ratio, 3), "ratio"),
        ("ha.failover_s", round(max(took), 2), "s"),
        ("ha.stream_lag_ms_p99", round(p99(standby_ms), 1), "ms"),
        ("ha.stream_lag_extra_ms_p99", round(p99(extra_ms), 1), "ms"),
    ]
    for every, name in ((REPORT_S, "5s"), (FAST_REPORT_S, "1s")):
        (gw_leader, gw_standby, server), rate, wal = sized[every]
        figures += [
            (f"ha.sizing_{name}_reports_per_s", round(rate, 1), "reports/s"),
            (f"ha.sizing_{name}_leader_cpu_pct", gw_leader, "% of a core"),
            (f"ha.sizing_{name}_standby_cpu_pct", gw_standby, "% of a core"),
            (f"ha.sizing_{name}_postgres_cpu_pct", server, "% of a core"),
            (f"ha.sizing_{name}_wal_bytes_per_report", round(wal), "bytes"),
        ]
    figures += [
        ("ha.postgres_position_bytes", round(position_bytes), "bytes/row"),
        ("ha.postgres_press_bytes", round(press_bytes), "bytes/row"),
    ]
    missed = []
    if max(took) > FAILOVER_TARGET_S:
        missed.append(f"failover {max(took):.1f} s > {FAILOVER_TARGET_S} s")
    if p99(standby_ms) > 2 * STREAM_TARGET_MS:
        missed.append(f"stream lag p99 {p99(standby_ms):.0f} ms, twice the target {STREAM_TARGET_MS} ms")
    if ratio < 0.5 * 0.8:
        missed.append(f"PostgreSQL ingest at {ratio:.2f} of SQLite's")
    if missed:
        raise RuntimeError("ha: " + "; ".join(missed))
    return figures
