"""Hypothesis against the gateway's edge: arbitrary bytes and arbitrary JSON on every
topic a unit may publish on. Nothing raises out of decoding and validation but a
refusal with a reason; through the pipeline, every message is stored, taken for a
duplicate or quarantined, and acknowledged, and the units' views stay whole."""

import json
import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import protocol, validate
from gateway.availability import Limits
from gateway.errors import ProtocolError, Rejected
from gateway.identity import Trust
from gateway.pipeline import Incoming, Pipeline
from gateway.statuses import AVAILABILITIES, StatusScheme
from gateway.store import Store

NOW = time.time()
REGISTRY = {"amb-01": {"unit_id": "amb-01"}}
TOPICS = [f"siaga/amb-01/{k}" for k in ("pos", "status", "conn", "tele")] + ["siaga/AMB/status", "x/y"]
FIELDS = ["_type", "boot", "seq", "key", "t", "sent", "ms", "lat", "lon", "unit", "fw", "dropped", "supply_v"]
TYPES = ["status", "birth", "bye", "will", "tele", "ack", 3, None, [], {}]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
near_messages = st.fixed_dictionaries(
    {"_type": st.sampled_from(TYPES)},
    optional={name: st.integers(-5, 2**33) | json_values for name in FIELDS[1:]},
)


# messages a unit could have sent, some of them twice or with other content under one
# identity: the pipeline's paths for new, duplicate and conflicting messages
ident = {"boot": st.integers(0, 3), "seq": st.integers(0, 6)}
times = {"t": st.integers(int(NOW) - 600, int(NOW) + 600), "sent": st.integers(int(NOW) - 600, int(NOW))}
unit_messages = st.one_of(
    st.fixed_dictionaries({"_type": st.just("status"), **ident, **times, "key": st.integers(0, 9)}),
    st.fixed_dictionaries({"_type": st.sampled_from(["birth", "bye"]), **ident, **times}),
    st.fixed_dictionaries({"_type": st.just("will"), **ident}),
    st.fixed_dictionaries({"_type": st.just("tele"), **ident, **times}, optional={"supply_v": scalars}),
)


def as_payload(value):
    return json.dumps(value, allow_nan=True).encode()


payloads = (
    unit_messages.map(as_payload)
    | st.binary(max_size=200)
    | json_values.map(as_payload)
    | near_messages.map(as_payload)
    | st.binary(min_size=29, max_size=29 * 3).map(lambda b: b"\x50" + b[1:])
)


@settings(max_examples=1500, deadline=None)
@given(topic=st.sampled_from(TOPICS), payload=payloads)
def test_decoding_and_validation_refuse_with_a_reason_or_accept(topic, payload):
    try:
        msg = protocol.decode(topic, payload)
        validate.message(msg, REGISTRY, NOW, Trust())
    except (ProtocolError, Rejected) as e:
        assert e.code and e.message
        return
    for value in [*msg.body.values(), *(v for r in msg.records for v in r.values())]:
        assert not isinstance(value, float) or math.isfinite(value)  # any reply can carry it
    json.dumps({"body": msg.body, "records": msg.records}, allow_nan=False)


KIND_OF = {"status": "status", "birth": "conn", "bye": "conn", "will": "conn", "tele": "tele"}
on_its_topic = unit_messages.map(lambda m: (f"siaga/amb-01/{KIND_OF[m['_type']]}", as_payload(m)))
anything = st.tuples(st.sampled_from(TOPICS[:4]), payloads)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(on_its_topic | anything, min_size=1, max_size=12))
def test_every_message_of_a_batch_is_judged_and_acknowledged(tmp_path_factory, batch):
    store = Store(tmp_path_factory.mktemp("fuzz") / "siaga.db")
    store.upsert_unit({"unit_id": "amb-01", "kind": "ambulance", "callsign": "A1", "agency": ""})
    p = Pipeline(store, StatusScheme(), Limits())
    items = [Incoming(topic, payload, NOW, mid=n, qos=1) for n, (topic, payload) in enumerate(batch)]
    out = p.handle(items, NOW)
    assert [i.mid for i in out.acknowledge] == [i.mid for i in items] and out.retry == []
    assert p.accepted + p.duplicates + sum(p.refused.values()) == len(items)
    quarantined = store.db.execute("select count(*) from quarantine").fetchone()[0]
    assert quarantined == sum(p.refused.values())
    view = p.view("amb-01", NOW)
    assert view["availability"] in AVAILABILITIES
    json.dumps(view, allow_nan=False)
    store.db.conn.close()
