# Siaga wire protocol v1 (docs/protocol.md): encode what a unit sends, decode what it
# receives (JSON on its downlink). Runs under MicroPython and CPython; errors are
# ValueError(reason) with the reasons listed in the protocol. Decoding what units send
# (positions, topics) is firmware/tools/wire_decode.py: a unit never needs it, so it
# takes none of the unit's heap.
import json
import struct

POS_FORMAT = 0x50
POS_STRUCT = ">BHIIiiHHBBI"
POS_SIZE = 29
UNKNOWN16 = 0xFFFF
UNKNOWN8 = 0xFF

# the downlink's messages, by _type: the integer fields each must carry
DOWN_TYPES = {"ack": ("boot", "seq"), "config": ("version",), "assign": ("id",), "release": ("id",)}


def topic(unit, kind):
    return "siaga/" + unit + "/" + kind


def _clamp(value, scale, top):
    if value is None:
        return top
    v = int(value * scale + 0.5)
    return v if v < top else top - 1


def encode_pos(boot, seq, t, lat, lon, speed, heading, sats, hdop, sent):
    """One 29-byte position record; speed m/s, heading degrees, None = unknown."""
    hd = UNKNOWN16 if heading is None else int(heading * 100 + 0.5) % 36000
    return struct.pack(
        POS_STRUCT,
        POS_FORMAT,
        boot & 0xFFFF,
        seq,
        t,
        int(round(lat * 1e7)),
        int(round(lon * 1e7)),
        _clamp(speed, 100, UNKNOWN16),
        hd,
        _clamp(sats, 1, UNKNOWN8),
        _clamp(hdop, 10, UNKNOWN8),
        sent,
    )


def encode_json(kind, boot, seq, **fields):
    fields["_type"] = kind
    fields["boot"] = boot
    fields["seq"] = seq
    return json.dumps(fields).encode()


def ident(record):
    """(boot, seq) of a position record."""
    return struct.unpack_from(">HI", record, 1)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_json(payload, types):
    """The JSON object in `payload`, its `_type` one of `types` (a dict: _type -> the
    integer fields it must carry, none negative); ValueError(reason) otherwise."""
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeError):
        raise ValueError("bad_json")
    if not isinstance(msg, dict):
        raise ValueError("bad_json")
    mtype = msg.get("_type")
    if mtype not in types:
        raise ValueError("bad_type")
    for name in types[mtype]:
        if name not in msg:
            raise ValueError("missing_field")
        if not _is_int(msg[name]) or msg[name] < 0:
            raise ValueError("bad_value")
    if msg.get("boot", 0) > 0xFFFF or msg.get("seq", 0) > 0xFFFFFFFF:
        raise ValueError("bad_value")
    if mtype == "config" and not isinstance(msg.get("values"), dict):
        raise ValueError("missing_field" if "values" not in msg else "bad_value")
    return msg
