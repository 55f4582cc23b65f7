"""`make demo-ha` / `siaga demo-ha`: the demo (simulators/demo.py) with two gateways on
one PostgreSQL database and one MQTT session id. One leads (holds the session, ingests);
the other stands by and serves the same API, map and live stream. Kill the leader
(`kill -9 PID`, printed) and the standby takes over within seconds; the killed one is
started again a few seconds later and stands by, so it can be done again.

PostgreSQL is the one SIAGA_DATABASE_URL names (the machine's own), else a server of the
demo's own in a temporary folder (provisioning/postgres.py), started from the main
thread (it dies with the thread that started it) and removed at the stop."""

import os
import time

from gateway.errors import SiagaError
from gateway.store_pg import redacted
from provisioning.postgres import start_primary

from .demo import Demo
from .gateway_process import wait_until

RESTART_AFTER_S = 5.0  # a killed gateway is started again after this (it comes back as standby)


def start_database(demo):
    """(URL, what it is): SIAGA_DATABASE_URL's, else a temporary server's."""
    url = os.environ.get("SIAGA_DATABASE_URL")
    if url:
        print(f"  using the PostgreSQL database of SIAGA_DATABASE_URL ({redacted(url)}) ...", flush=True)
        return url, f"PostgreSQL {redacted(url)} (SIAGA_DATABASE_URL)"
    print("  starting PostgreSQL in a temporary folder ...", flush=True)
    server = start_primary()
    demo.on_stop.append(server.remove)
    return (
        server.url(),
        f"PostgreSQL on 127.0.0.1:{server.port}, a temporary one in {server.folder} (removed at the stop)",
    )


def name(gateway):
    return f"gw-{gateway.http_port}"


def say(text):
    print(f"  {time.strftime('%H:%M:%S')}  {text}", flush=True)


def role(gateway):
    """ "leader", "standby", or None (not running, not answering)."""
    if gateway.proc is None or gateway.proc.poll() is not None:
        return None
    try:
        return gateway.get("/api/v1/health")[1].get("role")
    except SiagaError:
        return None


class Watch:
    """Once a second while the demo runs: says when another gateway leads, and starts a
    killed one again after RESTART_AFTER_S."""

    def __init__(self, gateways, leader):
        self.gateways = gateways
        self.leader = leader
        self.gone_at = {}

    def __call__(self):
        for gateway in self.gateways:
            self._restart_if_gone(gateway)
        leaders = [g for g in self.gateways if role(g) == "leader"]
        if len(leaders) == 1 and leaders[0] is not self.leader:
            self.leader = leaders[0]
            other = next(g for g in self.gateways if g is not self.leader)
            pid = self.leader.proc.pid
            say(
                f"{name(self.leader)} leads now (pid {pid}); kill -9 {pid} and {name(other)} takes over again"
            )

    def _restart_if_gone(self, gateway):
        if gateway.proc.poll() is None:
            return
        if gateway not in self.gone_at:
            self.gone_at[gateway] = time.monotonic()
            code = gateway.proc.returncode
            say(
                f"{name(gateway)} (pid {gateway.proc.pid}) is gone (exit {code}); starting it again in"
                f" {RESTART_AFTER_S:g} s, as a standby"
            )
        elif time.monotonic() - self.gone_at[gateway] >= RESTART_AFTER_S:
            del self.gone_at[gateway]
            try:
                gateway.start()
            except (RuntimeError, AssertionError) as e:  # exited, or no answer in time: again later
                self.gone_at[gateway] = time.monotonic()
                say(f"{name(gateway)} did not start again: {e}")
                return
            say(f"{name(gateway)} runs again (pid {gateway.proc.pid}), {role(gateway)}")


def run_demo_ha():
    with Demo("Siaga demo, high availability: two gateways on one PostgreSQL", gateways=2) as demo:
        url, database = start_database(demo)
        demo.prepare(database_url=url)
        addresses = ",".join(f"http://127.0.0.1:{port}" for port in demo.http_ports)
        for port in demo.http_ports:
            print(f"  starting a gateway on port {port} ...", flush=True)
            demo.start_gateway(
                port, ["--gateways", addresses], database_url=url, log_name=f"gateway-{port}.log"
            )
        gateways = demo.gateways
        roles = lambda: [role(g) for g in gateways]  # noqa: E731
        wait_until(lambda: sorted(roles()) == ["leader", "standby"], 30, 0.2, "one leader, one standby")
        leader = gateways[roles().index("leader")]
        demo.start_fleet(leader)
        lines = [
            f"  gateway   {g.url}/api/v1/units  {name(g)}, pid {g.proc.pid}, {role(g)}  (log {g.log_path})"
            for g in gateways
        ]
        standby = next(g for g in gateways if g is not leader)
        lines += [
            f"  database  {database}",
            f"  leader    {name(leader)}: kill -9 {leader.proc.pid}  and {name(standby)} takes over within"
            " seconds (the map moves to it); the killed one starts again as a standby",
        ]
        demo.describe(leader.url, lines, f"SIAGA_API={addresses}")
        demo.wait(Watch(gateways, leader))
    return 0
