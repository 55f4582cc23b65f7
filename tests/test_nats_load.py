"""A broker node killed under load (issue 16): the 3-node NATS cluster (the session's
`nats_cluster`), one gateway process given every node, 20 units each with its own NATS
login over TLS with the project CA (2 of them real virtual units, the firmware in
MicroPython with the cluster's nodes in broker_host; the rest paho units,
tests/load_units.py), 200 crew presses spread over the run. A node is SIGKILLed three
times and started again after each: the first and last time the node the gateway is on,
the second time another one. At the end:

- every press is stored once: none lost, none twice (per unit, its statuses in the API);
- after each kill every unit is back online within 30 s in the gateway's view: its link
  `online`, not offline, and its last_seen moved past the kill (a will lost with its
  node is never needed: 2.9.10 does not send it);
- what the cluster acknowledged while the gateway was away (its node killed) reaches the
  gateway once it is back on another node: the persistent session kept its messages. So
  that there surely are some, the gateway is held (SIGSTOP) at the kill of its node until
  the cluster has acknowledged HELD_UNTIL messages of the units after the kill (its
  reconnect alone takes 0.5-6 s, and a leader election may take all of it).

A paho unit moves to the next node when its connection is lost or a message has no
PUBACK for PUBACK_WAIT_S, and sends everything unacknowledged again there: NATS 2.9.10
does not PUBACK a QoS 1 message during a JetStream leader election (docs/brokers.md),
and the firmware's outbox does the same."""

import itertools
import signal
import sqlite3
import time

from load_units import Load, PahoUnit, assert_each_press_stored_once, stored

from simulators.gateway_process import GatewayProcess, wait_until

UNITS = 20
VIRTUAL = 2  # of them real virtual units, the rest paho units
PRESSES = 200
LOAD_S = 50.0  # presses spread over this long; positions every second throughout
KILLS_AT = (4.0, 22.0, 40.0)  # s into the run (later if the cluster took longer before)
BACK_ONLINE_S = 30.0
PUBACK_WAIT_S = 3.0
HELD_UNTIL = 20  # messages acknowledged after the kill of the gateway's node, while it is held
_runs = itertools.count(1)


def acked_since(paho, since):
    """(unit_id, seq) of the paho units' messages the cluster acknowledged after `since`."""
    return [(u, seq) for u, unit in paho.items() for seq, t in list(unit.acked.items()) if t >= since]


def online_since(gw, ids, since):
    """True when every unit is online in the gateway's view and heard from after `since`."""
    views = {u["unit_id"]: u for u in gw.get("/api/v1/units")[1] if u["unit_id"] in ids}
    return len(views) == len(ids) and all(
        v["link"] == "online" and v["availability"] != "offline" and (v["last_seen"] or 0) > since
        for v in views.values()
    )


def test_the_gateways_config_names_every_node(nats_cluster):
    from gateway import config

    class Args:
        config = str(nats_cluster.gateway_config_path)

    settings = config.resolve(Args, environ={})
    assert settings["mqtt"] == nats_cluster.mqtt_list()
    assert config.host_ports(settings["mqtt"], 1883) == nats_cluster.mqtt_addresses()
    assert settings["mqtt_user"] == "siaga-gateway" and settings["mqtt_password"]
    assert nats_cluster.gateway_flags()[-2:] == ["--mqtt", nats_cluster.mqtt_list()]


def test_a_node_killed_three_times_under_load_loses_nothing(nats_cluster, vunits, tmp_path):
    run = f"{next(_runs)}{time.monotonic_ns() % 1000:03d}"
    ids = [f"nl{run}-{i:02d}" for i in range(UNITS)]
    cafile = nats_cluster.ca.ca_cert
    addresses = nats_cluster.mqtt_addresses()
    with nats_cluster.admin() as admin:
        passwords = {u: admin.add_unit(u) for u in ids}
    gw_id = f"gw-nload-{run}"
    gw = GatewayProcess(
        tmp_path / "gateway", nats_cluster.tls_port, client_id=gw_id, extra=nats_cluster.gateway_flags()
    ).start()
    paho, load, away = {}, None, []
    try:
        for unit_id in ids:
            gw.register(unit_id)
        virtual = {}
        for i, unit_id in enumerate(ids[:VIRTUAL]):  # each starts on a node of its own
            nodes = ",".join(f"{h}:{p}" for h, p in addresses[i:] + addresses[:i])
            virtual[unit_id] = vunits(
                unit_id,
                broker=(nodes, nats_cluster.tls_port),
                password=passwords[unit_id],
                ca=cafile,
                config={"confirm_after_s": 5},
            )
        for i, unit_id in enumerate(ids[VIRTUAL:], VIRTUAL):
            paho[unit_id] = PahoUnit(
                addresses,
                unit_id,
                i,
                client_id=unit_id,
                login=(unit_id, passwords[unit_id]),
                cafile=cafile,
                puback_wait=PUBACK_WAIT_S,
            )
            paho[unit_id].birth()
        wait_until(lambda: online_since(gw, ids, 0), 30, 0.3, "every unit's birth")
        load = Load(ids, virtual, paho, PRESSES, LOAD_S)
        back, killed_nodes = [], []
        for n, at in enumerate(KILLS_AT):
            load.at(at)
            on = nats_cluster.node_of(gw_id)
            assert on is not None, "the gateway on no node"
            others = [i for i in nats_cluster.running() if i != on]
            last = killed_nodes[-1][0] if killed_nodes else None
            victim = on if n != 1 else next((i for i in others if i != last), others[0])
            if victim == on:
                gw.proc.send_signal(signal.SIGSTOP)
            killed_at, started = time.time(), time.monotonic()
            nats_cluster.kill_node(victim)
            killed_nodes.append((victim, victim == on))
            if victim == on:  # held until its session surely queued messages, then back
                try:
                    wait_until(lambda t=killed_at: len(acked_since(paho, t)) >= HELD_UNTIL, 20, 0.1, "acks")
                finally:
                    gw.proc.send_signal(signal.SIGCONT)
                wait_until(lambda: nats_cluster.node_of(gw_id) is not None, 20, 0.1, "the gateway back")
                away.append((killed_at, time.time()))
            wait_until(lambda t=killed_at: online_since(gw, ids, t), BACK_ONLINE_S, 0.3, "every unit online")
            back.append(time.monotonic() - started)
            nats_cluster.start_node(victim)
        load.finish()
        everything = lambda: all(len(stored(gw, u)) >= load.pressed(u) for u in ids)  # noqa: E731
        wait_until(everything, 40, 0.5, "every press stored")
        time.sleep(1.0)
        assert_each_press_stored_once(gw, load)
        assert sum(load.pressed(u) for u in ids) == PRESSES

        # what the cluster took while the gateway was away reached it: its presses are
        # stored (above), its positions are in the gateway's database
        queued = [m for start, end in away for m in acked_since(paho, start) if paho[m[0]].acked[m[1]] <= end]
        assert len(away) == 2 and len(queued) >= 2 * HELD_UNTIL, away
        presses = {(u, seq) for u, unit in paho.items() for _, seq, _ in unit.pressed}
        queued_presses = [m for m in queued if m in presses]
        db = sqlite3.connect(f"file:{tmp_path / 'gateway' / 'siaga.db'}?mode=ro", uri=True)
        try:
            positions = set(db.execute("select unit_id, seq from positions"))
        finally:
            db.close()
        assert [m for m in queued if m not in presses and m not in positions] == []
        print(
            f"nats load: {PRESSES} presses stored once; nodes killed {killed_nodes} (index, the gateway's);"
            f" every unit back online {', '.join(f'{s:.1f}' for s in back)} s after each kill;"
            f" the gateway away {', '.join(f'{e - s:.1f}' for s, e in away)} s (held),"
            f" {len(queued)} messages ({len(queued_presses)} presses) acknowledged meanwhile;"
            f" paho units moved {sum(u.moves for u in paho.values())} times,"
            f" sent {sum(u.resent for u in paho.values())} messages again"
        )
    finally:
        if gw.proc is not None:
            gw.proc.send_signal(signal.SIGCONT)
        if load is not None:
            load.stop.set()
        for unit in paho.values():
            unit.close()
        gw.stop()
        for i in range(len(nats_cluster.nodes)):
            if i not in nats_cluster.running():
                nats_cluster.start_node(i)
