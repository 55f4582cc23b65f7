"""`make demo-ha` as a user meets it: two gateways on a PostgreSQL of the demo's own, one
leads and one stands by, the six units report; `kill -9` of the leader's printed PID and
the other leads within seconds while the crews' presses keep arriving; the killed one
comes back as a standby; SIGTERM leaves no process and no database folder behind."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from conftest import REPO, wait_until
from test_demo import processes_mentioning

from provisioning.processes import free_port
from simulators import vunit

GATEWAY_LINE = re.compile(r"^  gateway   (http://\S+)/api/v1/units  gw-\d+, pid (\d+), (leader|standby)")


def role(url):
    try:
        return httpx.get(url + "/api/v1/health", timeout=2).json().get("role")
    except (httpx.HTTPError, ValueError):
        return None


class Demo:
    """`siaga demo-ha` as a child process; its output read line by line as it comes."""

    def __init__(self, data):
        env = dict(os.environ, SIAGA_DATA_DIR=str(data), SIAGA_MQTT_PORT=str(free_port()))
        env.update(SIAGA_HTTP_PORT=str(free_port()), SIAGA_DEMO_PASSWORD="demo-sandi-112")
        env.pop("SIAGA_DATABASE_URL", None)  # a PostgreSQL of its own
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "siaga", "demo-ha"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text, timeout):
        return wait_until(lambda: next((x for x in self.lines if text in x), None), timeout, 0.2, repr(text))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.reader.join(10)
        return "\n".join(self.lines)


def test_demo_ha_fails_over_when_the_leader_is_killed(tmp_path):
    demo = Demo(tmp_path)
    try:
        demo.wait_for("Ctrl-C stops it all.", 90)
        printed = [m.groups() for m in map(GATEWAY_LINE.match, demo.lines) if m]
        assert sorted(r for _, _, r in printed) == ["leader", "standby"], demo.lines
        leader, pid = next((url, int(pid)) for url, pid, r in printed if r == "leader")
        standby = next(url for url, _, r in printed if r == "standby")
        assert f"kill -9 {pid}" in demo.wait_for("  leader    ", 1)
        token = demo.wait_for("export SIAGA_TOKEN=", 1).split("SIAGA_TOKEN=")[1].split()[0]
        api = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=3)
        health = api.get(standby + "/api/v1/health").json()
        assert health["role"] == "standby" and health["leader"] == "siaga gw-" + leader.rsplit(":", 1)[1]
        assert health["database"]["kind"] == "postgresql" and health["notifications"]["listening"]

        def reporting():  # the last unit provisioned may not have sent its first fix yet
            units = api.get(standby + "/api/v1/units").json()
            return len(units) == 6 and all(u["position"] for u in units)

        wait_until(reporting, 60, 0.5, "six units with positions, on the standby")

        def pressed(url, unit_id, after):  # the crew's press of key 3, as `url` stored it
            rows = api.get(f"{url}/api/v1/units/{unit_id}/statuses").json()
            return any(r["key"] == 3 and r["source"] == "crew" and r["received_at"] >= after for r in rows)

        def press_and_see(url, unit_id):
            at = time.time() - 1  # whole seconds on the unit's clock
            vunit.control(tmp_path / "sim", unit_id, {"cmd": "press", "key": 3, "long": False})
            wait_until(lambda: pressed(url, unit_id, at), 15, 0.2, f"{unit_id}'s press on {url}")

        press_and_see(standby, "amb-01")  # ingested by the leader, read on the standby
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: role(standby) == "leader", 15, 0.1, "the standby to lead")
        took = time.monotonic() - killed
        press_and_see(standby, "dmk-02")  # the new leader ingests
        demo.wait_for("leads now", 10)
        demo.wait_for("runs again", 30)
        wait_until(lambda: role(leader) == "standby", 10, 0.2, "the killed one back as a standby")
        press_and_see(leader, "amb-02")  # and it reads what the other ingests
        print(f"demo-ha: the standby led {took:.1f} s after the kill")
    finally:
        out = demo.stop()
    assert demo.proc.returncode == 0, out
    assert "stopped." in out and "map       http://127.0.0.1:" in out
    folder = re.search(r"a temporary one in (\S+) ", out).group(1)
    assert not Path(folder).exists()
    assert processes_mentioning(str(tmp_path)) == [] and processes_mentioning(folder) == []
