"""The gateway's decoder against docs/protocol-vectors.json (the firmware decodes the
same vectors under MicroPython in tests/firmware/test_wire.py)."""

import json
from pathlib import Path

import pytest

from gateway import protocol
from gateway.errors import ProtocolError

VECTORS = json.loads((Path(__file__).parent.parent / "docs" / "protocol-vectors.json").read_text())["vectors"]


def payload(v):
    return bytes.fromhex(v["hex"]) if "hex" in v else v["text"].encode()


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(v):
    if "error" in v:
        with pytest.raises(ProtocolError) as e:
            protocol.decode(v["topic"], payload(v))
        assert e.value.code == v["error"]
        return
    msg = protocol.decode(v["topic"], payload(v))
    if msg.kind == "pos":
        _approx({"_type": "pos", "records": msg.records}, v["decoded"])
    else:
        assert msg.body == v["decoded"]  # JSON in, JSON out: exact


def _approx(got, want):
    assert len(got["records"]) == len(want["records"])
    for g, w in zip(got["records"], want["records"], strict=True):
        assert g == pytest.approx(w, abs=1e-9)
    return True


def test_every_refusal_reason_in_the_doc_has_a_vector():
    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    reasons = {v["error"] for v in VECTORS if "error" in v}
    for reason in (
        "unknown_topic",
        "bad_unit_id",
        "too_large",
        "bad_length",
        "bad_format",
        "bad_json",
        "bad_type",
        "missing_field",
        "bad_value",
    ):
        assert f"`{reason}`" in doc
        assert reason in reasons, f"no vector for {reason}"


def test_ack_encoding_matches_the_vector():
    ack = next(v for v in VECTORS if v["topic"].endswith("/down"))
    body = json.loads(protocol.encode_ack(ack["decoded"]["boot"], ack["decoded"]["seq"]))
    assert body == ack["decoded"]
