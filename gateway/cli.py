"""The gateway's commands of `siaga` (composed with the others' in siaga/cli.py)."""

import json
import logging
import sys

from . import config
from .centre import INCIDENT_KINDS, UNIT_KINDS, local_time
from .client import Client
from .errors import SiagaError

TOKEN_HELP = "API token (siaga token create) [env SIAGA_TOKEN; the environment keeps it out of ps]"


def add_api_flags(p):
    """--api and --token, on every command that calls the gateway's API."""
    p.add_argument(
        "--api",
        help="gateway URL, or several comma-separated: the next is asked when one does not answer"
        " [env SIAGA_API, default http://127.0.0.1:$SIAGA_HTTP_PORT]",
    )
    p.add_argument("--token", help=TOKEN_HELP)


def api(args):
    """The gateway's API for this command: --api, $SIAGA_API or the local gateway (each
    may be a list of gateways, comma-separated)."""
    return Client(getattr(args, "api", None))


def wib(ts):
    return "-" if ts is None else local_time(ts, "%H:%M:%S")


def print_units(units):
    print(
        f"{'UNIT':<8} {'CALLSIGN':<12} {'KIND':<10} {'AVAILABILITY':<14} {'STATUS':<22} "
        f"{'POSITION':<22} {'FIX':<13} LAST SEEN"
    )
    for u in units:
        st = u["status"]
        status = f"{st['key']} {st['label']}" if st else "-"
        pos = u["position"]
        where = f"{pos['lat']:.5f},{pos['lon']:.5f}" if pos else "-"
        avail = "decommissioned" if u.get("decommissioned_at") else u["availability"]
        print(
            f"{u['unit_id']:<8} {u['callsign'] or '-':<12.12} {u['kind']:<10} {avail:<14} "
            f"{status:<22.22} {where:<22} {wib(pos and pos['fix_time']):<13} {wib(u['last_seen'])}"
        )


def cmd_gateway(args):
    from .service import Gateway

    settings = config.resolve(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    Gateway(settings).run()


def degraded_warning(client):
    """A line saying why the gateway is degraded (its /health), or None when it is not."""
    health = client.get("/api/v1/health", accept=(503,))
    if health.get("status") == "ok":
        return None
    why = "; ".join(health.get("problems") or ["no reason given"])
    return f"WARNING: the gateway is degraded ({why}): what it shows may be out of date"


def cmd_units(args):
    client = api(args)
    units = client.get("/api/v1/units")
    warning = degraded_warning(client)
    if args.json:
        if warning:
            print(warning, file=sys.stderr)
        print(json.dumps(units, indent=1))
    else:
        if warning:
            print(warning)
        print_units(units)


def cmd_unit(args):
    print(json.dumps(api(args).get(f"/api/v1/units/{args.unit_id}"), indent=1))


def reset_counters(args):
    """The gateway forgets the unit's boot and message counters (and its link state), so
    that what was sent with the old password, forged or not, holds nothing back: 0, or 1
    (said on stderr) when the gateway could not be told."""
    try:
        api(args).post(f"/api/v1/units/{args.unit_id}/reset-counters")
    except SiagaError as e:
        print(
            f"{args.unit_id}: the gateway was not told to forget the unit's counters ({e.message});"
            f" run `siaga unit reset-counters {args.unit_id}` once it answers",
            file=sys.stderr,
        )
        return 1
    print(f"{args.unit_id}: the gateway forgot its boot and message counters", file=sys.stderr)
    return 0


def cmd_register(args):
    body = {
        "unit_id": args.unit_id,
        "kind": args.kind,
        "callsign": args.callsign or args.unit_id.upper(),
        "agency": args.agency,
    }
    print(json.dumps(api(args).post("/api/v1/units", body), indent=1))


def _act(args, path, body):
    reply = api(args).post(f"/api/v1/units/{args.unit_id}/{path}", body)
    u = reply["unit"]
    status = u["status"]
    print(
        f"{u['unit_id']}: {u['availability']}"
        + (f", status {status['key']} {status['label']} ({status['source']})" if status else "")
        + (f", flags {' '.join(u['flags'])}" if u["flags"] else "")
    )


def cmd_assign(args):
    body = {"lat": args.lat, "lon": args.lon, "kind": args.kind, "note": args.note}
    if args.override_reason:
        body["override_reason"] = args.override_reason
    _act(args, "assign", body)


def cmd_status(args):
    _act(args, "status", {"key": args.key, "reason": args.reason})


def cmd_simple_action(path):
    return lambda args: _act(args, path, {"reason": args.reason or ""})


def cmd_nearest(args):
    query = f"lat={args.lat}&lon={args.lon}&limit={args.limit}"
    if args.incident_kind:
        query += f"&incident_kind={args.incident_kind}"
    units = api(args).get(f"/api/v1/nearest?{query}")
    if not units:
        print("no available unit of a fitting kind has a position")
    for u in units:
        print(
            f"{u['unit_id']:<8} {u['callsign'] or '-':<12.12} {u['kind']:<10} {_by_road(u)}"
            f"  position {u['position']['age']:.0f} s old"
        )


def _by_road(u):
    """ETA and distance by road, or the straight line when the road map cannot say."""
    straight = f"{u['distance_m'] / 1000:6.2f} km straight"
    if u.get("eta_min") is None:
        return f"ETA     -  {straight}"
    return f"ETA {u['eta_min']:5.1f} min {u['road_m'] / 1000:6.2f} km by road ({straight.strip()})"


def cmd_decode(args):
    from . import protocol

    payload = bytes.fromhex(args.payload) if not args.text else args.payload.encode()
    msg = protocol.decode(args.topic, payload)
    print(
        json.dumps(
            {
                "unit": msg.unit,
                "kind": msg.kind,
                **msg.body,
                **({"records": msg.records} if msg.records else {}),
            },
            indent=1,
        )
    )


def _dispatch_commands(sub):
    def unit_parser(name, helptext, func):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("unit_id")
        add_api_flags(p)
        p.set_defaults(func=func)
        return p

    a = unit_parser(
        "assign", "assign a unit to an incident (it is 'assigned' until its crew presses 3)", cmd_assign
    )
    a.add_argument("--lat", type=float, required=True)
    a.add_argument("--lon", type=float, required=True)
    a.add_argument("--kind", required=True, choices=tuple(INCIDENT_KINDS))
    a.add_argument("--note", default="", help="address, what happened")
    a.add_argument(
        "--override-reason", default="", help="assign a unit that is not available anyway, for this reason"
    )
    st = unit_parser("status", "set a unit's status as dispatcher, with a reason", cmd_status)
    st.add_argument("key", type=int, choices=range(10))
    st.add_argument("--reason", required=True)
    for name, helptext in (
        ("release", "release a unit from its assignment"),
        ("lock", "lock a unit's status: crew presses are shown but do not count"),
        ("unlock", "unlock a unit's status"),
        ("clear-emergency", "clear a unit's emergency (nothing else does)"),
    ):
        p = unit_parser(name, helptext, cmd_simple_action(name))
        p.add_argument("--reason", default="")
    n = sub.add_parser(
        "nearest", help="the available units nearest to a point, by drive time when a road map is imported"
    )
    n.add_argument("--lat", type=float, required=True)
    n.add_argument("--lon", type=float, required=True)
    n.add_argument("--incident-kind", choices=tuple(INCIDENT_KINDS))
    n.add_argument("--limit", type=int, default=5)
    add_api_flags(n)
    n.set_defaults(func=cmd_nearest)


def add_commands(sub):
    """The gateway's own commands: run it, and ask its API."""
    g = sub.add_parser("gateway", help="run the gateway (MQTT ingest, storage, HTTP API)")
    config.add_flags(g)
    g.set_defaults(func=cmd_gateway)

    u = sub.add_parser("units", help="print the gateway's unit table")
    u.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_api_flags(u)
    u.set_defaults(func=cmd_units)

    r = sub.add_parser("register", help="add or update a unit in the gateway's registry")
    r.add_argument("unit_id")
    r.add_argument("--kind", default="ambulance", choices=UNIT_KINDS)
    r.add_argument("--callsign")
    r.add_argument("--agency", default="")
    add_api_flags(r)
    r.set_defaults(func=cmd_register)

    _dispatch_commands(sub)

    d = sub.add_parser("decode", help="decode a captured payload (hex, or --text for JSON)")
    d.add_argument("topic")
    d.add_argument("payload")
    d.add_argument("--text", action="store_true", help="the payload is text, not hex")
    d.set_defaults(func=cmd_decode)


def add_unit_commands(usub):
    """`siaga unit show|reset-counters UNIT_ID`."""
    show = usub.add_parser("show", help="print one unit as JSON (short: siaga unit UNIT_ID)")
    show.add_argument("unit_id")
    add_api_flags(show)
    show.set_defaults(func=cmd_unit)
    reset = usub.add_parser(
        "reset-counters",
        help="the gateway forgets a unit's boot and message counters (after forged or new hardware)",
    )
    reset.add_argument("unit_id")
    add_api_flags(reset)
    reset.set_defaults(func=reset_counters)
