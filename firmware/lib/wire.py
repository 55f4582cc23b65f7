# Siaga wire protocol v1 (docs/protocol.md): encode what a unit sends, decode what it
# receives. Runs under MicroPython and CPython; errors are ValueError(reason) with the
# reasons listed in the protocol.
import json
import struct

POS_FORMAT = 0x50
POS_STRUCT = ">BHIIiiHHBBI"
POS_SIZE = 29
UNKNOWN16 = 0xFFFF
UNKNOWN8 = 0xFF

_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
_JSON_TYPES = {
    "status": ("boot", "seq", "key", "t", "sent"),
    "birth": ("boot", "seq", "t", "sent"),
    "bye": ("boot", "seq", "t", "sent"),
    "will": ("boot", "seq"),
    "tele": ("boot", "seq", "t", "sent"),
    "ack": ("boot", "seq"),
    "config": ("version",),
    "assign": ("id",),
    "release": ("id",),
}
_TOPIC_TYPES = {
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


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def decode_json(kind, payload):
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeError):
        raise ValueError("bad_json")
    if not isinstance(msg, dict):
        raise ValueError("bad_json")
    mtype = msg.get("_type")
    if mtype not in _TOPIC_TYPES[kind]:
        raise ValueError("bad_type")
    for name in _JSON_TYPES[mtype]:
        if name not in msg:
            raise ValueError("missing_field")
        if not _is_int(msg[name]) or msg[name] < 0:
            raise ValueError("bad_value")
    if msg.get("boot", 0) > 0xFFFF or msg.get("seq", 0) > 0xFFFFFFFF:
        raise ValueError("bad_value")
    if mtype == "config" and not isinstance(msg.get("values"), dict):
        raise ValueError("missing_field" if "values" not in msg else "bad_value")
    if mtype == "status" and not 0 <= msg["key"] <= 9:
        raise ValueError("bad_value")
    if "ms" in msg and (not _is_int(msg["ms"]) or not 0 <= msg["ms"] <= 999):
        raise ValueError("bad_value")
    return msg


def split_topic(name):
    """'siaga/amb-01/pos' -> ('amb-01', 'pos'); ValueError for anything else."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "siaga" or parts[2] not in _TOPIC_TYPES and parts[2] != "pos":
        raise ValueError("unknown_topic")
    if not valid_unit_id(parts[1]):
        raise ValueError("bad_unit_id")
    return parts[1], parts[2]


def decode(name, payload):
    """Decode any Siaga message: returns (unit, kind, message)."""
    unit, kind = split_topic(name)
    if kind == "pos":
        return unit, kind, decode_pos(payload)
    return unit, kind, decode_json(kind, payload)
