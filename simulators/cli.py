"""`siaga sim ...`: virtual units and fleets in the foreground."""

import os
import signal
import threading
from pathlib import Path

from gateway import config
from gateway.cli import TOKEN_HELP
from gateway.errors import SiagaError

from . import vunit
from .fleet import Fleet, Patrol, demo_specs, register
from .geo import CENTRE, to_xy
from .roaddrive import load_graph


def data_dir(args):
    return config.data_dir(args.data)


def broker(args):
    value = (
        args.broker
        or os.environ.get("SIAGA_MQTT")
        or f"127.0.0.1:{os.environ.get('SIAGA_MQTT_PORT', '1883')}"
    )
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def wait_for_signal():
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def start_xy(value):
    try:
        lat, lon = (float(v) for v in value.split(","))
    except ValueError:
        raise SiagaError(f"--start {value!r}: expected LAT,LON such as -2.21,113.92") from None
    return to_xy(lat, lon)


def cmd_unit(args):
    root = data_dir(args)
    roads = load_graph(root)  # the imported map's roads, when there is one
    unit = vunit.VirtualUnit(
        args.unit_id,
        Path(args.flash or root / "flash" / args.unit_id),
        root / "sim",
        broker(args),
        heap=args.heap,
        start_xy=start_xy(args.start),
        echo=True,
        roads=roads,
    ).start()
    if args.route == "patrol":
        Patrol(unit, unit.rng).start()
    on = f" on the roads of {root / 'map'}" if roads is not None else ""
    print(
        f"virtual unit {args.unit_id}: flash {unit.flash}, broker {unit.broker[0]}:{unit.broker[1]}, "
        f"route {args.route}{on}, control {unit.control_path}",
        flush=True,
    )
    try:
        wait_for_signal()
    finally:
        unit.stop()


def cmd_fleet(args):
    specs = demo_specs(args.count)
    if args.register:
        for spec in specs:
            register(args.register.rstrip("/"), spec)
    root = data_dir(args)
    roads = load_graph(root)  # the imported map's roads, when there is one
    fleet = Fleet(specs, root, broker(args), crews=not args.no_crews, echo=args.verbose, roads=roads).start()
    on = f" (on the roads of {root / 'map'})" if roads is not None else ""
    print("fleet:", ", ".join(s.unit_id for s in specs) + on, flush=True)
    try:
        wait_for_signal()
    finally:
        fleet.stop()


def _control(args, request):
    try:
        reply = vunit.control(data_dir(args) / "sim", args.unit_id, request)
    except ConnectionError as e:
        raise SiagaError(str(e)) from None
    if "error" in reply:
        raise SiagaError(reply["error"])
    return reply


def cmd_press(args):
    _control(args, {"cmd": "press", "key": args.key, "long": args.long})
    print(f"{args.unit_id}: pressed key {args.key}{' (long)' if args.long else ''}")


def cmd_state(args):
    reply = _control(args, {"cmd": "state", "lines": args.lines})
    leds = " ".join(f"{k}:{v}" for k, v in sorted(reply["leds"].items())) or "all off"
    print(f"{args.unit_id}: LEDs {leds}; buzzer {'on' if reply['buzzer'] else 'off'}")
    for line in reply["console"]:
        print("  " + line)


def cmd_demo(args):
    from .demo import run_demo

    return run_demo(args.broker)


def cmd_demo_ha(args):
    from .demo_ha import run_demo_ha

    return run_demo_ha()


def add_commands(sub):
    sim = sub.add_parser("sim", help="virtual units: run, press keys, read their panel")
    ssub = sim.add_subparsers(dest="sim_command", required=True)

    def common(p):
        p.add_argument("--data", help="data folder [env SIAGA_DATA_DIR, default ./var]")
        return p

    u = common(ssub.add_parser("unit", help="run one virtual unit in the foreground"))
    u.add_argument("unit_id")
    u.add_argument("--flash", help="the unit's flash folder [default DATA/flash/UNIT_ID]")
    u.add_argument("--broker", help="MQTT broker HOST:PORT [env SIAGA_MQTT]")
    u.add_argument("--heap", default=vunit.HEAP, help="MicroPython heap size [default %(default)s]")
    u.add_argument(
        "--route",
        choices=("patrol", "still"),
        default="patrol",
        help="patrol: drive between random places in the city; still: parked [default patrol]",
    )
    u.add_argument(
        "--start", default=",".join(map(str, CENTRE)), help="start position LAT,LON [default: the centre]"
    )
    u.set_defaults(func=cmd_unit)

    f = common(ssub.add_parser("fleet", help="run the demo fleet (ambulances and fire trucks)"))
    f.add_argument("--count", type=int, default=6)
    f.add_argument("--broker", help="MQTT broker HOST:PORT")
    f.add_argument("--register", metavar="URL", help="register the units with this gateway first")
    f.add_argument("--token", help=TOKEN_HELP)
    f.add_argument("--no-crews", action="store_true", help="no simulated crews pressing keys")
    f.add_argument("--verbose", action="store_true", help="echo every unit's console")
    f.set_defaults(func=cmd_fleet)

    p = common(ssub.add_parser("press", help="press a status key on a running virtual unit"))
    p.add_argument("unit_id")
    p.add_argument("key", type=int, choices=range(10))
    p.add_argument("--long", action="store_true", help="hold the key (the emergency key 0 needs it)")
    p.set_defaults(func=cmd_press)

    s = common(ssub.add_parser("state", help="show a virtual unit's LEDs, buzzer and console"))
    s.add_argument("unit_id")
    s.add_argument("--lines", type=int, default=10)
    s.set_defaults(func=cmd_state)

    d = sub.add_parser("demo", help="run broker, gateway and a virtual fleet until Ctrl-C")
    d.add_argument(
        "--broker",
        choices=("mosquitto", "nats"),
        default="mosquitto",
        help="Mosquitto (one host, the default) or a 3-node NATS cluster (docs/brokers.md)",
    )
    d.set_defaults(func=cmd_demo)
    h = sub.add_parser(
        "demo-ha", help="the demo with two gateways on one PostgreSQL: kill the leader, the standby leads"
    )
    h.set_defaults(func=cmd_demo_ha)
