# Decoding what Siaga units send (docs/protocol.md), under MicroPython as under CPython:
# binary position records, topics, and any message by its topic. The unit itself only
# encodes, and decodes its downlink (lib/wire.py), so this stays off its heap; the
# firmware's tests decode the shared vectors with it (tests/firmware/test_wire.py), and a
# technician can decode a capture in the unix port:
#     MICROPYPATH=firmware/lib:firmware/tools .venv/bin/micropython -c \
#         "import wire_decode; print(wire_decode.decode('siaga/amb-01/pos', bytes.fromhex('50...')))"
import struct

from wire import _is_int, DOWN_TYPES, POS_FORMAT, POS_SIZE, POS_STRUCT, UNKNOWN8, UNKNOWN16, check_json

_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
# _type -> the integer fields it must carry, as wire.DOWN_TYPES does for the downlink
UP_TYPES = {
    "status": ("boot", "seq", "key", "t", "sent"),
    "birth": ("boot", "seq", "t", "sent"),
    "bye": ("boot", "seq", "t", "sent"),
    "will": ("boot", "seq"),
    "tele": ("boot", "seq", "t", "sent"),
}
TOPIC_TYPES = {
    "status": ("status",),
    "conn": ("birth", "bye", "will"),
    "tele": ("tele",),
    "down": ("ack", "config", "assign", "release"),
}


def valid_unit_id(unit):
    if not 1 <= len(unit) <= 16 or unit[0] == "-":
        return False
    for c in unit:
        if c not in _ID_CHARS:
            return False
    return True


def _unknown(v, top, scale):
    return None if v == top else v / scale


def decode_pos(payload):
    n = len(payload)
    if n == 0 or n % POS_SIZE:
        raise ValueError("bad_length")
    out = []
    for off in range(0, n, POS_SIZE):
        f, boot, seq, t, lat, lon, sp, hd, sats, hdop, sent = struct.unpack_from(POS_STRUCT, payload, off)
        if f != POS_FORMAT:
            raise ValueError("bad_format")
        if not (-900000000 <= lat <= 900000000 and -1800000000 <= lon <= 1800000000):
            raise ValueError("bad_value")
        if hd != UNKNOWN16 and hd >= 36000:
            raise ValueError("bad_value")
        out.append(
            {
                "boot": boot,
                "seq": seq,
                "t": t,
                "lat": lat / 1e7,
                "lon": lon / 1e7,
                "speed": _unknown(sp, UNKNOWN16, 100),
                "heading": _unknown(hd, UNKNOWN16, 100),
                "sats": None if sats == UNKNOWN8 else sats,
                "hdop": _unknown(hdop, UNKNOWN8, 10),
                "sent": sent,
            }
        )
    return {"_type": "pos", "records": out}


def split_topic(name):
    """'siaga/amb-01/pos' -> ('amb-01', 'pos'); ValueError for anything else."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "siaga" or parts[2] not in TOPIC_TYPES and parts[2] != "pos":
        raise ValueError("unknown_topic")
    if not valid_unit_id(parts[1]):
        raise ValueError("bad_unit_id")
    return parts[1], parts[2]


def decode_json(kind, payload):
    """A JSON message on a topic of `kind` (status, conn, tele, down)."""
    types = {}
    for mtype in TOPIC_TYPES[kind]:
        types[mtype] = UP_TYPES[mtype] if mtype in UP_TYPES else DOWN_TYPES[mtype]
    msg = check_json(payload, types)
    if msg["_type"] == "status" and not 0 <= msg["key"] <= 9:
        raise ValueError("bad_value")
    if "ms" in msg and (not _is_int(msg["ms"]) or not 0 <= msg["ms"] <= 999):
        raise ValueError("bad_value")
    return msg


def decode(name, payload):
    """Decode any Siaga message: returns (unit, kind, message)."""
    unit, kind = split_topic(name)
    if kind == "pos":
        return unit, kind, decode_pos(payload)
    return unit, kind, decode_json(kind, payload)
