"""Fault injection on real parts, counted: a virtual unit's crew presses status keys at
random times while the broker stops or crashes, the LTE link goes silent or is cut, the
unit loses power mid-write and the gateway crashes. At the end every press must be in the gateway's
status history exactly once, with its original press time, in press order.

`broker="nats"` (`--broker nats`): the same against the 3-node NATS cluster
(provisioning/nats.py) with the unit's own login over TLS, the unit given every node
(through a link of its own to each) and the gateway too; the broker's faults become a
node's: `node_stop` and `node_crash` stop or SIGKILL the node the unit is on, or the one
the gateway is on (each in turn), found on the nodes' monitoring (/connz).

Used by tests/test_chaos.py (short) and `make chaos` (long; `make chaos-nats`)."""

import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.mosquitto import Mosquitto

from .gateway_process import GatewayProcess, wait_until
from .link import Link
from .vunit import VirtualUnit

KEYS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
FAULTS = ("broker_stop", "broker_crash", "link_silent", "power_cut", "gateway_crash", "link_cut")
# on the NATS cluster the broker's faults are a node's: the one the unit or the gateway is on
NODE_FAULTS = {"broker_stop": "node_stop", "broker_crash": "node_crash"}
BROKERS = ("mosquitto", "nats")


@dataclass
class Report:
    attempted: int = 0  # presses made on the panel
    pressed: int = 0  # presses the firmware took (a unit just powering up takes none)
    stored: int = 0
    lost: list = field(default_factory=list)
    duplicated: int = 0
    out_of_order: int = 0
    wrong_time: int = 0
    faults: dict = field(default_factory=dict)
    resent: int = 0  # presses sent again because the gateway had not confirmed them

    def line(self):
        return (
            f"pressed {self.pressed} (of {self.attempted} on the panel), stored {self.stored}, "
            f"lost {len(self.lost)}, duplicated in effect {self.duplicated}, "
            f"out of order {self.out_of_order}, press time wrong {self.wrong_time}, "
            f"sent again unconfirmed {self.resent}; faults {self.faults}"
        )


class Chaos:
    def __init__(
        self, workdir, presses=40, seed=5, outage_s=(3, 8), outbox_bytes=24_000, log=print, broker="mosquitto"
    ):
        if broker not in BROKERS:
            raise ValueError(f"broker {broker!r}: one of {', '.join(BROKERS)}")
        self.work = Path(workdir)
        self.presses = presses
        self.rng = random.Random(seed)
        self.outage = outage_s
        self.log = log
        self.unit_id = "amb-77"
        self.nats = broker == "nats"
        self.faults = tuple(NODE_FAULTS.get(f, f) for f in FAULTS) if self.nats else FAULTS
        if self.nats:
            from provisioning.nats import NatsCluster

            self.broker = NatsCluster(self.work / "nats")
        else:
            self.broker = Mosquitto(self.work / "broker")
        self.password = None  # the unit's own login on the cluster
        self.gw_client_id = "gw-chaos"
        self.node_victim = "unit"  # whose node the next node fault takes: the unit's, then the gateway's
        self.gateway = None
        self.links = []  # the unit's link: one proxy, or one to each node
        self.unit = None
        self.config = {
            "keepalive_s": 4,
            "outbox_max_bytes": outbox_bytes,
            "undelivered_alarm_s": 600,
            "confirm_after_s": 5,
        }
        self.console = []  # every line the unit printed, across reboots
        self.pressed_at = {}  # (boot, seq) -> wall time the crew pressed
        self.report = Report(faults={f: 0 for f in self.faults})

    # the parts

    def start(self):
        self.broker.start()
        extra = []
        if self.nats:
            with self.broker.admin() as admin:
                self.password = admin.add_unit(self.unit_id, replace=True)
            extra = self.broker.gateway_flags()  # its login, every node
            ports = [port for _, port in self.broker.mqtt_addresses()]
        else:
            ports = [self.broker.port]
        self.gateway = GatewayProcess(
            self.work / "gateway", self.broker.port, client_id=self.gw_client_id, extra=extra
        ).start()
        self.gateway.register(self.unit_id)
        self.links = [Link(port).start() for port in ports]
        self._power_on()
        wait_until(lambda: self.gateway.unit(self.unit_id)["link"] == "online", 30, 0.2, "the unit online")
        return self

    def _power_on(self):
        hosts = ",".join(f"127.0.0.1:{link.port}" for link in self.links)
        self.unit = VirtualUnit(
            self.unit_id,
            self.work / "flash",
            self.work / "sim",
            (hosts if self.nats else "127.0.0.1", self.links[0].port),
            seed=self.rng.random(),
            config=self.config,
            password=self.password,
            ca=self.broker.ca.ca_cert if self.nats else None,
        ).start()

    def _power_cut(self):
        self._harvest()
        self.unit.kill()
        time.sleep(self.rng.uniform(0.2, 2))
        self._power_on()

    def _harvest(self):
        """Collect what the unit printed: its boot, and each press it journalled."""
        lines = list(self.unit.lines)
        self.console.extend(lines)
        self.unit.lines.clear()

    # faults

    def _fault(self, name):
        self.report.faults[name] += 1
        self.log(f"chaos: {name}")
        if name == "broker_stop":
            self.broker.stop()
            time.sleep(self.rng.uniform(*self.outage))
            self.broker.start()
        elif name == "broker_crash":  # what it took since its last save is gone
            self._press_some(1)
            self.broker.kill()
            time.sleep(self.rng.uniform(0.5, 2))
            self.broker.start()
        elif name in ("node_stop", "node_crash"):
            self._node_fault(name)
        elif name == "link_silent":
            for link in self.links:
                link.silent.set()
            self._press_some(self.rng.randint(1, 3))
            time.sleep(self.rng.uniform(*self.outage))
            for link in self.links:
                link.silent.clear()
        elif name == "link_cut":
            for link in self.links:
                link.cut()
        elif name == "power_cut":
            self._power_cut()
        elif name == "gateway_crash":
            self.gateway.kill()
            self._press_some(self.rng.randint(1, 3))
            time.sleep(self.rng.uniform(0.5, 3))
            self.gateway.start()

    def _node_fault(self, name):
        """Stop (SIGTERM, an outage) or SIGKILL (a crash) the node the unit is on, or the
        one the gateway is on, in turn; started again after."""
        whose, self.node_victim = self.node_victim, "gateway" if self.node_victim == "unit" else "unit"
        node = self.broker.node_of(self.unit_id if whose == "unit" else self.gw_client_id)
        if node is None:  # not connected now (a fault before this one): the first running node
            node = self.broker.running()[0]
        self.log(f"chaos: {name}: node {node + 1}, the {whose}'s")
        if name == "node_stop":
            self.broker.stop_node(node)
            time.sleep(self.rng.uniform(*self.outage))
        else:
            self._press_some(1)
            self.broker.kill_node(node)
            time.sleep(self.rng.uniform(0.5, 2))
        self.broker.start_node(node)

    def _press_some(self, n):
        for _ in range(n):
            if self.report.attempted >= self.presses:
                return
            time.sleep(self.rng.uniform(0.3, 2.0))
            self.unit.press(self.rng.choice(KEYS))
            self.report.attempted += 1

    # the run

    def run(self, fault_every=4):
        order = list(self.faults)
        self.started = time.time()
        while self.report.attempted < self.presses:
            self._press_some(self.rng.randint(1, fault_every))
            if self.report.attempted < self.presses:
                if not order:
                    order = list(self.faults)
                self._fault(order.pop(self.rng.randrange(len(order))))
        return self.settle()

    def _journalled(self):
        """(boot, seq) of every press the firmware took, from its console."""
        boot, out = None, []
        for line in self.console + list(self.unit.lines):
            m = re.match(r"unit \S+ boot (\d+)", line)
            if m:
                boot = int(m.group(1))
            m = re.match(r"key (\d) pressed.*: seq (\d+)", line)
            if m:
                out.append((boot, int(m.group(2))))
        return out

    def settle(self, timeout=120):
        journalled = self._journalled()

        def history():
            rows = self.gateway.get(f"/api/v1/units/{self.unit_id}/statuses?limit=10000")[1]
            return [r for r in rows if r["source"] == "crew"]

        def all_there():
            have = {(r["boot"], r["seq"]) for r in history()}
            return all(p in have for p in journalled)

        try:
            wait_until(all_there, timeout, 0.5, "every press in the gateway's history")
        except AssertionError:
            pass
        rows = history()
        stored = [(r["boot"], r["seq"]) for r in rows]
        r = self.report
        r.stored = len(rows)
        r.lost = [p for p in journalled if p not in set(stored)]
        r.duplicated = len(stored) - len(set(stored))
        by_time = sorted(rows, key=lambda x: x["pressed_at"])
        pairs = zip(by_time, by_time[1:], strict=False)
        r.out_of_order = sum(1 for a, b in pairs if (a["boot"], a["seq"]) > (b["boot"], b["seq"]))
        r.wrong_time = sum(1 for x in rows if not self.started - 2 <= x["pressed_at"] <= time.time())
        r.pressed = len(journalled)
        r.resent = sum(1 for line in self.console + list(self.unit.lines) if "not confirmed" in line)
        return r

    def stop(self):
        for part in (self.unit, *self.links):
            if part is not None:
                try:
                    part.kill() if part is self.unit else part.stop()
                except OSError:
                    pass
        if self.gateway:
            self.gateway.stop()
        self.broker.stop()


def main(argv=None):
    import argparse
    import tempfile

    p = argparse.ArgumentParser(description="Fault injection with counting (make chaos).")
    p.add_argument("--presses", type=int, default=200)
    p.add_argument("--outage", default="20,120", help="MIN,MAX seconds of each outage")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument(
        "--broker",
        choices=BROKERS,
        default="mosquitto",
        help="mosquitto (one broker), or nats: the 3-node NATS cluster, whose node faults "
        "stop or kill the node the unit or the gateway is on",
    )
    args = p.parse_args(argv)
    lo, hi = (float(v) for v in args.outage.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        chaos = Chaos(
            tmp, presses=args.presses, seed=args.seed, outage_s=(lo, hi), broker=args.broker
        ).start()
        try:
            report = chaos.run()
        finally:
            chaos.stop()
    print(f"chaos ({args.broker}):", report.line())
    return 0 if not report.lost and not report.duplicated and not report.out_of_order else 1


if __name__ == "__main__":
    raise SystemExit(main())
