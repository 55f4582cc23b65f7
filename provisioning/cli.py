"""The technician's commands: `siaga provision` turns a board into a unit; `siaga unit
move|rotate|decommission|enable UNIT_ID` manage its identity and broker credentials.

The broker's admin password is read from the secure broker's data folder, Mosquitto's or
the NATS cluster's (`--broker-data`, or $SIAGA_BROKER_DATA, default $SIAGA_DATA_DIR/broker,
i.e. var/broker), the API token from $SIAGA_TOKEN (or `siaga --token`); neither is ever a flag of its own."""

import csv
import os
import sys
from pathlib import Path

from gateway import cli as gateway_cli
from gateway import config
from gateway.centre import UNIT_KINDS
from gateway.client import default_url
from gateway.errors import SiagaError

from . import flash
from .provision import BOARDS, Provisioner, ProvisionError
from .selftest import TechnicianPanel


def _broker_data(args):
    return Path(
        getattr(args, "broker_data", None)
        or os.environ.get("SIAGA_BROKER_DATA")
        or config.data_dir() / "broker"
    )


def _panel(args):
    """Who presses the test key and reads its LED: a virtual board's panel (--panel, from
    the command that composed this one), the technician at the terminal, or nobody."""
    if args.panel:
        sim_dir, _, name = args.panel.rpartition(":")
        if not sim_dir or not name or args.virtual_panel is None:
            raise ProvisionError("--panel is SIM_DIR:NAME, a virtual board's control socket")
        return args.virtual_panel(sim_dir, name)
    return TechnicianPanel(_ask) if sys.stdin.isatty() else None


def _ask(question):
    """The technician's answer at the terminal: Enter or y is yes."""
    try:
        answer = input(f"  ? {question} ")
    except EOFError:
        return False
    return answer.strip().lower() in ("", "y", "yes")


def _confirm(args, text):
    if args.yes or not sys.stdin.isatty():
        return
    if input(f"{text} [y/N] ").strip().lower() not in ("y", "yes"):
        raise ProvisionError("stopped by the technician; nothing was changed")


def _one(args, unit_id, port, board, kind, callsign, agency, move=False):
    if args.blank:
        print(flash.blank_board_help(board, port))
        return 1
    _confirm(args, f"provision {unit_id} on the board at {port}?")
    p = Provisioner(
        unit_id,
        port,
        board,
        _broker_data(args),
        default_url(args.api),
        kind=kind,
        callsign=callsign,
        agency=agency,
        token=os.environ.get("SIAGA_TOKEN"),
        replace=args.replace,
        move=move,
        broker_host=args.broker_host,
        panel=_panel(args),
        selftest=not args.no_selftest,
    )
    try:
        ok = p.run()
    except flash.NotAnswering as e:
        raise ProvisionError(
            f"{e.message}; nothing was changed.\n{flash.blank_board_help(board, port)}"
        ) from None
    print(
        f"{unit_id}: " + ("provisioned, self-test passed" if ok else "provisioned, but the self-test FAILED")
    )
    return 0 if ok else 1


def cmd_provision(args):
    if args.batch:
        return _batch(args)
    if not args.unit_id or not args.port:
        raise ProvisionError("give UNIT_ID and --port (or --batch FILE.csv)")
    return _one(args, args.unit_id, args.port, args.board, args.kind, args.callsign, args.agency)


def _batch(args):
    """One unit per CSV row: unit_id, port, and optionally kind, callsign, agency, board.
    Goes on after a failed unit; exit code 1 if any failed."""
    args.yes = True
    failed = []
    with open(args.batch, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        uid = row.get("unit_id", "").strip()
        print(f"== {uid} on {row.get('port')}")
        try:
            rc = _one(
                args,
                uid,
                row["port"].strip(),
                row.get("board") or args.board,
                row.get("kind") or args.kind,
                row.get("callsign") or None,
                row.get("agency") or args.agency,
            )
        except (SiagaError, KeyError) as e:
            print(f"siaga: {getattr(e, 'message', e)}", file=sys.stderr)
            rc = 2
        if rc:
            failed.append(uid)
    print(
        f"batch: {len(rows) - len(failed)} of {len(rows)} provisioned"
        + (f"; failed: {' '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def cmd_move(args):
    """The same identity on new hardware: rotated credentials, the old board refused."""
    unit = gateway_cli.api(args).get(f"/api/v1/units/{args.unit_id}")
    args.replace = True
    return _one(
        args,
        args.unit_id,
        args.port,
        args.board,
        unit["kind"],
        unit.get("callsign"),
        unit.get("agency", ""),
        True,
    )


def _common(p):
    p.add_argument("--port", help="the board's serial port (/dev/ttyUSB0, /dev/ttyACM0)")
    p.add_argument(
        "--board", default=BOARDS[0], choices=BOARDS, help=f"the board's build (default {BOARDS[0]})"
    )
    gateway_cli.add_api_flags(p)
    p.add_argument(
        "--broker-data",
        help="the broker's data folder, Mosquitto's or the NATS cluster's [default $SIAGA_DATA_DIR/broker]",
    )
    p.add_argument(
        "--broker-host",
        help="the broker's address as the units reach it; a cluster's nodes comma-separated, "
        "host:port each (n1.example:8883,n2.example:8883) [default: broker.json's]",
    )
    p.add_argument("--yes", action="store_true", help="do not ask before changing anything")
    p.add_argument(
        "--blank", action="store_true", help="the board has no MicroPython yet: show the esptool steps"
    )
    p.add_argument("--no-selftest", action="store_true", help="skip the self-test after the reboot")
    p.add_argument(
        "--panel",
        metavar="SIM_DIR:NAME",
        help="a virtual board's control socket: the self-test presses its keys",
    )


def add_commands(sub, virtual_panel=None):
    """`siaga provision`; `virtual_panel(sim_dir, name)`: a virtual board's panel for
    --panel (the simulators', given by the command that composes this one)."""
    p = sub.add_parser(
        "provision",
        help="turn a board into a unit: registry, broker credentials, image, copy, verify, self-test",
    )
    p.add_argument("unit_id", nargs="?")
    p.add_argument("--kind", default="ambulance", choices=UNIT_KINDS)
    p.add_argument("--callsign", help="e.g. 'AMBULANS 07' [default: the unit id in capitals]")
    p.add_argument("--agency", default="")
    p.add_argument(
        "--replace", action="store_true", help="provision again a unit that is already provisioned"
    )
    p.add_argument(
        "--batch", metavar="FILE.csv", help="one unit a row: unit_id,port[,kind,callsign,agency,board]"
    )
    _common(p)
    p.set_defaults(func=cmd_provision, virtual_panel=virtual_panel)


def _admin(args):
    """The admin of the broker in the data folder: Mosquitto's or the NATS cluster's."""
    from .broker_admin import open_admin

    return open_admin(_broker_data(args))


def cmd_rotate(args):
    """A new password for the unit (printed last, alone, for its config.json); the old
    one is refused from now on. `siaga provision --replace` does this and puts it on."""
    with _admin(args) as admin:
        password = admin.rotate(args.unit_id)
    print(f"{args.unit_id}: new broker password; the old one is refused from now on", file=sys.stderr)
    rc = gateway_cli.reset_counters(args)
    print(password)
    return rc


def cmd_decommission(args):
    with _admin(args) as admin:
        admin.decommission(args.unit_id)
    print(f"{args.unit_id}: decommissioned: the broker refuses it from now on; its history stays")
    return _gateway_action(args, "decommission", "out of the fleet in the gateway too")


def cmd_enable(args):
    with _admin(args) as admin:
        admin.enable(args.unit_id)
    print(f"{args.unit_id}: enabled again on the broker")
    return _gateway_action(args, "enable", "back in the fleet in the gateway too")


def _gateway_action(args, action, done):
    """The gateway's half of decommission and enable (its API, so that its pipeline,
    its live stream and its dispatchers see it at once): 0, or 1 said on stderr."""
    try:
        gateway_cli.api(args).post(f"/api/v1/units/{args.unit_id}/{action}")
    except SiagaError as e:
        print(
            f"{args.unit_id}: the gateway was not told ({e.message}); run this again once it answers",
            file=sys.stderr,
        )
        return 1
    print(f"{args.unit_id}: {done}")
    return 0


def cmd_ca_init(args):
    from . import ca

    directory = Path(args.dir) if args.dir else _broker_data(args) / "ca"
    try:
        p = ca.ensure_ca(directory, names=args.name)
    except (OSError, ValueError) as e:
        raise SiagaError(f"CA in {directory}: {e}") from None
    print(f"CA certificate  {p.ca_cert}   (goes onto every unit's flash as ca.crt)")
    print(f"CA key          {p.ca_key}   (0600: keep it secret, keep a copy offline)")
    print(f"broker          {p.server_cert}, {p.server_key}")
    print(f"broker names    {', '.join(ca.server_names(p.server_cert))}")


def add_ca_commands(sub):
    c = sub.add_parser("ca", help="the project certificate authority (TLS to the broker)")
    csub = c.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    init = csub.add_parser("init", help="create the CA and the broker's certificate (once; kept after)")
    init.add_argument("--dir", help="folder for the CA [default: <broker data>/ca]")
    init.add_argument("--name", action="append", default=[], help="a further name or address of the broker")
    init.add_argument("--broker-data", help="the secure broker's data folder [default var/broker]")
    init.set_defaults(func=cmd_ca_init)


def cmd_map_import(args):
    from .mapimport import import_map

    meta = import_map(
        args.pbf, config.data_dir(args.data), progress=not args.quiet, basemap=not args.no_basemap
    )
    graph, where = meta["graph"], config.data_dir(args.data) / "map"
    demo = " (a demo map)" if meta["demo"] else ""
    print(f"{meta['source']}{demo}: {graph['nodes']} road nodes, {graph['edges']} edges -> {where}")
    if meta["basemap"] is None and not args.no_basemap:
        print("no basemap: tilemaker is not installed (make tilemaker); drive times work without it")


def add_map_commands(sub):
    """`siaga map import REGION.osm.pbf`."""
    m = sub.add_parser("map", help="the centre's street map: road graph for drive times, offline basemap")
    msub = m.add_subparsers(dest="map_command", required=True, metavar="ACTION")
    imp = msub.add_parser(
        "import", help="import an OSM extract (.osm.pbf) into the data folder, replacing the map there"
    )
    imp.add_argument("pbf", type=Path, metavar="REGION.osm.pbf")
    imp.add_argument("--data", help="the gateway's data folder [default $SIAGA_DATA_DIR, or var]")
    imp.add_argument("--no-basemap", action="store_true", help="only the road graph, no tiles")
    imp.add_argument("--quiet", action="store_true", help="no progress bars")
    imp.set_defaults(func=cmd_map_import)


def add_unit_commands(usub, virtual_panel=None):
    """`siaga unit ACTION UNIT_ID`: a unit's identity and its broker credentials."""
    m = usub.add_parser(
        "move", help="move a unit's identity to replacement hardware (the old board is refused)"
    )
    m.add_argument("unit_id")
    _common(m)
    m.set_defaults(func=cmd_move, replace=True, virtual_panel=virtual_panel)
    for name, func, helptext in (
        ("rotate", cmd_rotate, "a new broker password for a unit (the old one is refused at once)"),
        ("decommission", cmd_decommission, "the broker refuses the unit at once; its history stays"),
        ("enable", cmd_enable, "let a decommissioned unit in again"),
    ):
        c = usub.add_parser(name, help=helptext)
        c.add_argument("unit_id")
        c.add_argument(
            "--broker-data",
            help="the broker's data folder, Mosquitto's or the NATS cluster's [env SIAGA_BROKER_DATA]",
        )
        gateway_cli.add_api_flags(c)
        c.set_defaults(func=func)


def cmd_db_migrate_from_sqlite(args):
    from .dbmigrate import migrate

    url = config.value("database_url", args.database_url)
    if not url:
        raise SiagaError("the PostgreSQL database to copy into: --database-url or SIAGA_DATABASE_URL")
    report = migrate(args.path, url, progress=not args.quiet)
    print("\n".join(report.lines()))


def add_db_commands(sub):
    """`siaga db migrate-from-sqlite PATH`."""
    d = sub.add_parser("db", help="the gateway's database: move it from SQLite to PostgreSQL")
    dsub = d.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    m = dsub.add_parser(
        "migrate-from-sqlite",
        help="copy a gateway's SQLite database (siaga.db) into an empty PostgreSQL database, counts checked",
    )
    m.add_argument("path", type=Path, metavar="PATH", help="the gateway's siaga.db (in its data folder)")
    m.add_argument(
        "--database-url",
        help="the PostgreSQL database, empty (libpq connection string) [env SIAGA_DATABASE_URL]",
    )
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(func=cmd_db_migrate_from_sqlite)
