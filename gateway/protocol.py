"""Decode uplink payloads and encode downlink ones, as docs/protocol.md specifies.

The firmware has its own codec (firmware/lib/wire.py); both decode
docs/protocol-vectors.json in their tests with identical results.
"""

import functools
import json
import math
import re
import struct
from dataclasses import dataclass, field

from .errors import ProtocolError

UNIT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
POS = struct.Struct(">BHIIiiHHBBI")
POS_FORMAT = 0x50
U16_UNKNOWN, U8_UNKNOWN = 0xFFFF, 0xFF
U32 = 0xFFFFFFFF

# Bounds checked before anything is parsed. A live report is 29 bytes, a 16-record
# backlog batch 464, a birth about 250, telemetry about 450: 4 KB leaves room and is the
# broker's own `message_size_limit` too (provisioning/mosquitto.conf).
MAX_PAYLOAD = 4096
MAX_DEPTH = 3  # a JSON object in an object (birth's `dropped`) in the message; no more

# Every field of every JSON message, per `_type`: (kind, bounds, required, nullable).
# kinds: "int" (an integer, not a bool, lo..hi), "num" (a finite number, lo..hi),
# "str" (a string of at most `bounds` characters), "counts" (an object of small integers),
# "obj" (an object, the downlink's `values`). Fields a message does not list are
# ignored, so a newer unit's extra fields never make its message refused.
IDENT = {"boot": ("int", (0, 0xFFFF), True), "seq": ("int", (0, U32), True)}
TIMES = {"t": ("int", (0, U32), True), "sent": ("int", (0, U32), True)}
UNIT = {"unit": ("str", 16, False)}


def _f(kind, bounds, required=False, nullable=False):
    return (kind, bounds, required, nullable)


def _fields(*parts, **more):
    out = {}
    for part in parts:
        out.update({name: _f(*spec) for name, spec in part.items()})
    out.update(more)
    return out


FIELDS = {
    "status": _fields(
        IDENT,
        TIMES,
        UNIT,
        key=_f("int", (0, 9), True),
        ms=_f("int", (0, 999)),
        lat=_f("num", (-90, 90)),
        lon=_f("num", (-180, 180)),
    ),
    "birth": _fields(
        IDENT,
        TIMES,
        UNIT,
        fw=_f("str", 32),
        board=_f("str", 48),
        reset=_f("str", 24),
        cfg=_f("int", (0, U32)),
        dropped=_f("counts", (0, U32)),
        torn=_f("int", (0, U32)),
    ),
    "bye": _fields(IDENT, TIMES, UNIT),
    "will": _fields(IDENT, UNIT),
    "tele": _fields(
        IDENT,
        TIMES,
        UNIT,
        up=_f("int", (0, U32)),
        heap_free=_f("int", (0, U32)),
        heap_peak=_f("int", (0, U32)),
        heap_start=_f("int", (0, U32)),
        heap_high=_f("int", (0, U32)),
        heap_largest=_f("int", (0, U32)),
        heap_recovered=_f("int", (0, U32)),
        waiting=_f("int", (0, U32)),
        unjournaled=_f("int", (0, U32)),
        write_errors=_f("int", (0, U32)),
        mqtt_resent=_f("int", (0, U32)),
        mqtt_discards=_f("int", (0, U32)),
        mqtt_oversize=_f("int", (0, U32)),
        mqtt_protocol_errors=_f("int", (0, U32)),
        io_errors=_f("int", (0, U32)),
        flash_free=_f("int", (0, 2**48)),
        supply_v=_f("num", (0, 100)),
        rssi=_f("int", (-200, 0), nullable=True),
        reg=_f("str", 16, nullable=True),
        op=_f("str", 32, nullable=True),
        act=_f("str", 16, nullable=True),
        modem=_f("str", 16, nullable=True),
        losses=_f("int", (0, U32)),
        modem_error=_f("str", 64, nullable=True),
        modem_discards=_f("int", (0, U32)),
    ),
    # downlinks: the gateway encodes them; decoded here for the shared test vectors
    "ack": _fields(IDENT),
    "config": _fields(version=_f("int", (0, U32), True), values=_f("obj", None, True)),
    "assign": _fields(
        id=_f("int", (0, 2**63 - 1), True),
        lat=_f("num", (-90, 90)),
        lon=_f("num", (-180, 180)),
        kind=_f("str", 32),
        note=_f("str", 500),
    ),
    "release": _fields(id=_f("int", (0, 2**63 - 1), True)),
}
# _type by topic kind
TYPES = {
    "status": ("status",),
    "conn": ("birth", "bye", "will"),
    "tele": ("tele",),
    "down": ("ack", "config", "assign", "release"),
}


@dataclass
class Message:
    """One decoded message: `kind` is the topic kind, `body` the decoded payload."""

    unit: str
    kind: str
    body: dict
    records: list = field(default_factory=list)


@functools.lru_cache(maxsize=8192)  # a fleet has a few topics per unit: decode each once
def split_topic(topic):
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "siaga" or parts[2] not in ("pos", *TYPES):
        raise ProtocolError(f"topic {topic[:80]!r} is not a Siaga topic", "unknown_topic")
    if not UNIT_ID.match(parts[1]):
        raise ProtocolError(f"{parts[1][:40]!r} is not a valid unit id", "bad_unit_id")
    return parts[1], parts[2]


def unit_of(topic):
    """The unit a topic names, or None when it names none that could exist."""
    parts = topic.split("/", 3)
    if len(parts) == 3 and parts[0] == "siaga" and UNIT_ID.match(parts[1]):
        return parts[1]
    return None


def _or_none(raw, unknown, scale):
    return None if raw == unknown else raw / scale


def _position(rec):
    fmt, boot, seq, t, lat, lon, speed, heading, sats, hdop, sent = rec
    if fmt != POS_FORMAT:
        raise ProtocolError(f"position format byte {fmt:#04x}, expected 0x50", "bad_format")
    if abs(lat) > 900_000_000 or abs(lon) > 1_800_000_000:
        raise ProtocolError("coordinates out of range", "bad_value")
    if heading != U16_UNKNOWN and heading >= 36000:
        raise ProtocolError("heading out of range", "bad_value")
    return {
        "boot": boot,
        "seq": seq,
        "t": t,
        "lat": lat / 1e7,
        "lon": lon / 1e7,
        "speed": _or_none(speed, U16_UNKNOWN, 100),
        "heading": _or_none(heading, U16_UNKNOWN, 100),
        "sats": None if sats == U8_UNKNOWN else sats,
        "hdop": _or_none(hdop, U8_UNKNOWN, 10),
        "sent": sent,
    }


def decode_positions(payload):
    if not payload or len(payload) % POS.size:
        raise ProtocolError(
            f"position payload of {len(payload)} bytes is not a multiple of {POS.size}", "bad_length"
        )
    return [_position(rec) for rec in POS.iter_unpack(payload)]


def _not_json(name):
    raise ProtocolError(f"{name} is not a JSON number", "bad_json")


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"number {text[:40]} is out of range", "bad_value")
    return value


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def _depth(payload):
    """How deep the payload's arrays and objects nest (strings skipped)."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_DEPTH:
        return 1  # the common case: too few brackets to nest too deep
    deepest = depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", payload)):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _parse(payload):
    if _depth(payload) > MAX_DEPTH:
        raise ProtocolError(f"JSON nested deeper than {MAX_DEPTH}", "bad_json")
    try:
        return json.loads(payload, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # ProtocolError is none of these
        raise ProtocolError(f"payload is not JSON: {str(e)[:120]}", "bad_json") from None


def _bad(name, value, why):
    return ProtocolError(f"field {name!r} {why}: {str(value)[:40]!r}", "bad_value")


def _checked(name, value, kind, bounds):
    """The value, or ProtocolError (bad_value) naming the field."""
    if kind in ("int", "num"):
        number = type(value) is int or (kind == "num" and type(value) is float)
        if not number:
            raise _bad(name, value, f"must be {'an integer' if kind == 'int' else 'a number'}")
        if not bounds[0] <= value <= bounds[1]:
            raise _bad(name, value, f"is outside {bounds[0]}..{bounds[1]}")
    elif kind == "str":
        if type(value) is not str or len(value) > bounds:
            raise _bad(name, value, f"must be a string of at most {bounds} characters")
    elif kind == "counts":
        if type(value) is not dict or len(value) > 8:
            raise _bad(name, value, "must be an object of counts")
        for k, v in value.items():
            _checked(f"{name}.{k[:16]}", v, "int", bounds)
    elif type(value) is not dict:  # "obj"
        raise _bad(name, value, "must be an object")
    return value


def decode_json(kind, payload):
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}", "too_large")
    msg = _parse(payload)
    if not isinstance(msg, dict):
        raise ProtocolError("payload is not a JSON object", "bad_json")
    mtype = msg.get("_type")
    if type(mtype) is not str or mtype not in TYPES[kind]:
        raise ProtocolError(f"_type {str(mtype)[:40]!r} is not expected on {kind}", "bad_type")
    body = {"_type": mtype}
    for name, (fkind, bounds, required, nullable) in FIELDS[mtype].items():
        if name not in msg:
            if required:
                raise ProtocolError(f"field {name!r} is missing", "missing_field")
            continue
        value = msg[name]
        body[name] = None if value is None and nullable else _checked(name, value, fkind, bounds)
    return body


def decode(topic, payload):
    """The Message a payload on a topic carries, or ProtocolError with the reason."""
    unit, kind = split_topic(topic)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}", "too_large")
    if kind == "pos":
        return Message(unit, kind, {"_type": "pos"}, decode_positions(payload))
    return Message(unit, kind, decode_json(kind, payload))


def encode_ack(boot, seq):
    return json.dumps({"_type": "ack", "boot": boot, "seq": seq}).encode()


def encode_config(version, values):
    return json.dumps({"_type": "config", "version": version, "values": values}).encode()


def encode_action(action, action_id, incident=None):
    """The downlink a dispatcher action sends to the unit, or None."""
    if action == "assign":
        return json.dumps(
            {
                "_type": "assign",
                "id": action_id,
                "lat": incident["lat"],
                "lon": incident["lon"],
                "kind": incident["kind"],
                "note": incident.get("note", ""),
            }
        ).encode()
    if action == "release":
        return json.dumps({"_type": "release", "id": action_id}).encode()
    return None


def down_topic(unit):
    return f"siaga/{unit}/down"
