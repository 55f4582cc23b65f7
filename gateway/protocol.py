"""Decode uplink payloads and encode downlink ones, as docs/protocol.md specifies.

The firmware has its own codec (firmware/lib/wire.py); both decode
docs/protocol-vectors.json in their tests with identical results.
"""

import functools
import json
import re
import struct
from dataclasses import dataclass, field

from .errors import ProtocolError

UNIT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")
POS = struct.Struct(">BHIIiiHHBBI")
POS_FORMAT = 0x50
U16_UNKNOWN, U8_UNKNOWN = 0xFFFF, 0xFF

# _type -> integer fields it must carry, per topic kind
JSON_SCHEMA = {
    "status": {"status": ("boot", "seq", "key", "t", "sent")},
    "conn": {
        "birth": ("boot", "seq", "t", "sent"),
        "bye": ("boot", "seq", "t", "sent"),
        "will": ("boot", "seq"),
    },
    "tele": {"tele": ("boot", "seq", "t", "sent")},
    "down": {"ack": ("boot", "seq"), "config": ("version",), "assign": ("id",), "release": ("id",)},
}
LIMITS = {"boot": 0xFFFF, "seq": 0xFFFFFFFF, "key": 9, "ms": 999}


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
    if len(parts) != 3 or parts[0] != "siaga" or parts[2] not in ("pos", *JSON_SCHEMA):
        raise ProtocolError(f"topic {topic!r} is not a Siaga topic", "unknown_topic")
    if not UNIT_ID.match(parts[1]):
        raise ProtocolError(f"{parts[1]!r} is not a valid unit id", "bad_unit_id")
    return parts[1], parts[2]


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


def _check_int(msg, name):
    value = msg.get(name)
    if name not in msg:
        raise ProtocolError(f"field {name!r} is missing", "missing_field")
    if type(value) is not int or not 0 <= value <= LIMITS.get(name, 2**32 - 1):
        raise ProtocolError(f"field {name!r} has an impossible value {value!r}", "bad_value")


def decode_json(kind, payload):
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"payload is not JSON: {e}", "bad_json") from None
    if not isinstance(msg, dict):
        raise ProtocolError("payload is not a JSON object", "bad_json")
    required = JSON_SCHEMA[kind].get(msg.get("_type"))
    if required is None:
        raise ProtocolError(f"_type {msg.get('_type')!r} is not expected on {kind}", "bad_type")
    for name in required:
        _check_int(msg, name)
    if "ms" in msg:
        _check_int(msg, "ms")
    if msg["_type"] == "config" and not isinstance(msg.get("values"), dict):
        if "values" not in msg:
            raise ProtocolError("field 'values' is missing", "missing_field")
        raise ProtocolError("field 'values' must be an object", "bad_value")
    return msg


def decode(topic, payload):
    unit, kind = split_topic(topic)
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
