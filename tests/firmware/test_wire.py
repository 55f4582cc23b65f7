# The firmware's codec against docs/protocol-vectors.json (the gateway decodes the same):
# lib/wire.py encodes, and decodes the downlink; tools/wire_decode.py decodes the rest.
import json
import os

import wire
import wire_decode


def _vectors():
    with open(os.getenv("SIAGA_REPO") + "/docs/protocol-vectors.json") as f:
        return json.load(f)["vectors"]


def _payload(v):
    if "hex" in v:
        return bytes.fromhex(v["hex"])
    return v["text"].encode()


def _same(a, b, where):
    if isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None and abs(a - b) < 1e-9, where
    elif isinstance(a, dict):
        assert sorted(a.keys()) == sorted(b.keys()), where
        for k in a:
            _same(a[k], b[k], where + "." + k)
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i in range(len(a)):
            _same(a[i], b[i], where + "[%d]" % i)
    else:
        assert a == b, where + ": %r != %r" % (a, b)


def test_vectors_decode():
    for v in _vectors():
        if v.get("checked_by") == "gateway":
            continue  # a check of uplink fields only the gateway makes (docs/protocol.md)
        try:
            _, _, got = wire_decode.decode(v["topic"], _payload(v))
        except ValueError as e:
            assert v.get("error") == str(e), v["name"] + ": refused with " + str(e)
            continue
        assert "error" not in v, v["name"] + ": should be refused"
        _same(got, v["decoded"], v["name"])


def test_positions_encode_to_the_vector_bytes():
    for v in _vectors():
        if "decoded" not in v or v["decoded"]["_type"] != "pos":
            continue
        payload = b""
        for r in v["decoded"]["records"]:
            payload += wire.encode_pos(
                r["boot"],
                r["seq"],
                r["t"],
                r["lat"],
                r["lon"],
                r["speed"],
                r["heading"],
                r["sats"],
                r["hdop"],
                r["sent"],
            )
        assert payload == bytes.fromhex(v["hex"]), v["name"]


def test_encoded_status_decodes_back():
    payload = wire.encode_json("status", 7, 42, key=3, t=1795862700, sent=1795862701)
    _, kind, msg = wire_decode.decode("siaga/amb-01/status", payload)
    assert kind == "status" and msg["key"] == 3 and msg["boot"] == 7 and msg["seq"] == 42


def test_position_record_is_29_bytes():
    rec = wire.encode_pos(1, 2, 1795862700, -2.21, 113.92, 10.0, 90.0, 8, 1.1, 1795862700)
    assert len(rec) == wire.POS_SIZE == 29
