"""Each message judged alone, on a real store (SQLite and PostgreSQL): whatever a message holds (an
attacker with one unit's password, a firmware bug), it is stored and applied, taken for
the duplicate it is, or quarantined with a reason, and it never fails, loses or changes
its neighbours. The same cases through the real broker and gateway process are in
tests/test_poison.py."""

import json
import sqlite3
import sys
import time

import pytest
from conftest import REPO

from gateway import protocol
from gateway.availability import Limits
from gateway.identity import MAX_RANGES, SeenIds, Trust
from gateway.pipeline import Action, Incoming, Pipeline
from gateway.statuses import StatusScheme
from gateway.store import QUARANTINE_KEEP_BYTES

sys.path.insert(0, str(REPO / "firmware" / "lib"))
import wire  # noqa: E402  (the unit's own encoder: what a unit sends)

NOW = int(time.time())


@pytest.fixture
def p(new_store):
    """A pipeline on each store (SQLite, PostgreSQL: the store_kind parameter)."""
    store = new_store()
    for unit in ("amb-01", "amb-02"):
        store.upsert_unit({"unit_id": unit, "kind": "ambulance", "callsign": unit.upper(), "agency": ""})
    return Pipeline(store, StatusScheme(), Limits())


def msg(kind, body, unit="amb-01", at=NOW):
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Incoming(f"siaga/{unit}/{kind}", payload, at, qos=1)


def press(seq, key=3, t=NOW - 5, boot=1, unit="amb-01", **more):
    return msg(
        "status", {"_type": "status", "boot": boot, "seq": seq, "key": key, "t": t, "sent": t, **more}, unit
    )


def birth(seq=0, boot=1, unit="amb-01", **more):
    return msg("conn", {"_type": "birth", "boot": boot, "seq": seq, "t": NOW, "sent": NOW, **more}, unit)


def fix(seq, t=NOW - 5, boot=1, lat=-2.21, unit="amb-01"):
    return Incoming(
        f"siaga/{unit}/pos", wire.encode_pos(boot, seq, t, lat, 113.92, 5.0, 90.0, 9, 0.9, t), NOW
    )


def quarantined(p):
    return [r[0] for r in p.store.reader().execute("select reason from quarantine order by id")]


def count(p, table):
    return p.store.reader().execute(f"select count(*) from {table}").fetchone()[0]


STATUS = b'"_type": "status", "boot": 1, "seq": 9, "key": 3, "t": 1, "sent": 1'
POISON = [
    (b'{"_type": []}', "bad_type"),
    (b'{"_type": {}}', "bad_type"),
    (b"[" * 3000, "bad_json"),
    (b'{"_type": "status", "x": [[[[1]]]]}', "bad_json"),
    (b"{" + STATUS + b', "lat": NaN}', "bad_json"),
    (b"{" + STATUS + b', "lat": 1e999}', "bad_value"),
    (b"{" + STATUS + b', "lat": 18446744073709551616}', "bad_value"),
    (b"{" + STATUS + b', "ms": 1' + b"0" * 4000 + b"}", "bad_value"),
    (b'{"_type": "status", "boot": true, "seq": 9, "key": 3, "t": 1, "sent": 1}', "bad_value"),
    (b"{" + STATUS + b', "unit": "' + b"x" * 100 + b'"}', "bad_value"),
    (b"\xff\xfe not even utf-8", "bad_json"),
    (b"{" + b'"a": 1, ' * 600 + b'"_type": "status"}', "too_large"),
]


@pytest.mark.parametrize(("payload", "reason"), POISON, ids=[r for _, r in POISON])
def test_a_poison_message_is_quarantined_alone_and_the_press_beside_it_is_stored(p, payload, reason):
    out = p.handle([birth(), msg("status", payload), press(1, key=2)], NOW)
    assert quarantined(p) == [reason]
    assert len(out.acknowledge) == 3  # the poison too: the broker is done with it
    assert count(p, "status_events") == 1 and p.view("amb-01", NOW)["status"]["key"] == 2


def test_numbers_no_reply_can_carry_never_get_in(p):
    nan_fw = b'{"_type": "birth", "boot": 1, "seq": 0, "t": 1, "sent": 1, "fw": NaN}'
    inf_supply = b'{"_type": "tele", "boot": 1, "seq": 1, "t": 1, "sent": 1, "supply_v": Infinity}'
    p.handle([msg("conn", nan_fw), msg("tele", inf_supply)], NOW)
    assert quarantined(p) == ["bad_json", "bad_json"]
    assert count(p, "conn_events") == count(p, "telemetry") == 0


def test_fields_a_unit_does_not_send_are_left_out(p):
    p.handle([birth(fw="0.2.0", colour="red", nested={"a": 1})], NOW)
    body = json.loads(p.store.reader().execute("select body from conn_events").fetchone()[0])
    assert body["fw"] == "0.2.0" and "colour" not in body and "nested" not in body


def test_a_huge_payload_keeps_only_its_head_in_quarantine(p):
    p.handle([msg("status", b"x" * 16_000_000)], NOW)
    payload, detail = p.store.reader().execute("select payload, detail from quarantine").fetchone()
    assert len(payload) == QUARANTINE_KEEP_BYTES and "16000000 bytes" in detail


def test_a_duplicate_changes_nothing_and_a_different_one_is_quarantined(p):
    p.handle([birth(), press(5, key=6)], NOW)
    out = p.handle([press(5, key=6, sent=NOW)], NOW)  # sent again: acknowledged again
    assert out.downlinks == [("siaga/amb-01/down", protocol.encode_ack(1, 5))]
    assert p.duplicates == 1
    out = p.handle([press(5, key=1)], NOW)  # the same identity, other content
    assert quarantined(p) == ["conflicting_duplicate"] and out.downlinks == []
    assert p.view("amb-01", NOW)["status"]["key"] == 6
    assert p.store.reader().execute("select key from status_events").fetchall() == [(6,)]


def test_an_identity_used_by_a_position_cannot_be_used_by_a_press(p):
    p.handle([birth(), fix(7)], NOW)
    p.handle([press(7, key=1)], NOW)
    assert quarantined(p) == ["conflicting_duplicate"] and count(p, "status_events") == 0


def test_a_position_sent_again_with_another_place_is_quarantined(p):
    p.handle([birth(), fix(3, lat=-2.21)], NOW)
    p.handle([fix(3, lat=-2.30)], NOW)
    p.handle([fix(3, t=NOW - 1, lat=-2.30)], NOW)  # or another fix time
    assert quarantined(p) == ["conflicting_duplicate"] * 2
    assert p.view("amb-01", NOW)["position"]["lat"] == -2.21 and count(p, "positions") == 1


def test_a_backlog_resent_in_other_batches_stores_each_record_once(p):
    records = [
        wire.encode_pos(1, s, NOW - 100 + s, -2.2, 113.9, 5.0, 90.0, 9, 0.9, NOW) for s in range(1, 21)
    ]
    first = Incoming("siaga/amb-01/pos", b"".join(records[:16]), NOW)
    again = Incoming("siaga/amb-01/pos", b"".join(records[10:]), NOW)  # 6 repeated, 4 new
    p.handle([birth(), first], NOW)
    p.handle([again], NOW)
    assert count(p, "positions") == 20 and quarantined(p) == []


def test_duplicates_within_one_batch(p):
    p.handle([birth(), press(4, key=2), press(4, key=2), press(4, key=7)], NOW)
    assert quarantined(p) == ["conflicting_duplicate"] and p.duplicates == 1
    assert p.view("amb-01", NOW)["status"]["key"] == 2


def test_times_ahead_of_the_gateway_are_refused_and_a_small_lead_cannot_win(p):
    trust = p.trust
    p.handle([birth(), press(1, key=2, t=NOW - 60)], NOW)
    p.handle([press(2, key=6, t=NOW + 3600), fix(3, t=NOW + 86400)], NOW)
    assert quarantined(p) == ["future_time", "future_time"]
    # a press 100 s ahead (within the tolerance) counts as made when it arrived ...
    p.handle([press(4, key=6, t=NOW + 100)], NOW)
    assert NOW + 100 < NOW + trust.max_clock_ahead
    # ... so the dispatcher's status set 10 s after it arrived is the newer
    act = Action("amb-01", "status", NOW + 10, "dina", key=2, reason="checked by radio")
    p.handle([act], NOW + 10)
    view = p.view("amb-01", NOW + 10)
    assert view["status"]["key"] == 2 and view["status"]["source"] == "dispatcher"


def test_a_forged_will_far_ahead_is_refused_and_the_real_birth_counts(p):
    p.handle([birth(seq=0, boot=3)], NOW)
    forged = msg("conn", {"_type": "will", "boot": 65535, "seq": 4294967295})
    never = msg("conn", {"_type": "will", "boot": 3, "seq": 40})  # no such session
    p.handle([forged, never], NOW)
    assert quarantined(p) == ["boot_jump", "unknown_session"]
    assert p.view("amb-01", NOW)["link"] == "online"
    bye = msg("conn", {"_type": "bye", "boot": 3, "seq": 4294967295, "t": NOW, "sent": NOW})
    p.handle([bye], NOW)
    assert quarantined(p)[-1] == "seq_jump" and p.view("amb-01", NOW)["link"] == "online"
    p.handle([msg("conn", {"_type": "will", "boot": 3, "seq": 0})], NOW)  # the real will
    assert p.view("amb-01", NOW)["link"] == "lost"


def test_reset_counters_lets_the_next_birth_count_whatever_came_before(p):
    p.handle([birth(seq=0, boot=3)], NOW)
    ahead = msg("conn", {"_type": "bye", "boot": 900, "seq": 5, "t": NOW, "sent": NOW})  # within the step
    p.handle([ahead], NOW)
    p.handle([birth(seq=0, boot=4)], NOW)  # the real unit: older than the forged bye
    assert p.view("amb-01", NOW)["link"] == "shutdown"
    p.handle([Action("amb-01", "reset_ids", NOW, "tek")], NOW)
    p.handle([birth(seq=0, boot=0)], NOW)  # new hardware, or rotated: its next birth
    assert p.view("amb-01", NOW)["link"] == "online"


def test_identities_survive_a_restart(p, tmp_path):
    p.handle([birth(), press(5, key=6)], NOW)
    again = Pipeline(p.store, StatusScheme(), Limits())
    again.handle([press(5, key=1)], NOW)
    assert quarantined(again) == ["conflicting_duplicate"]


class Breaking:
    """A store that fails on one unit's telemetry as an unforeseen bug would."""

    def __init__(self, store, error):
        self.store, self.error = store, error

    def __getattr__(self, name):
        return getattr(self.store, name)

    def add_telemetry(self, unit_id, body, received_at):
        raise self.error


def tele(seq, unit="amb-01"):
    return msg("tele", {"_type": "tele", "boot": 1, "seq": seq, "t": NOW, "sent": NOW}, unit)


def test_an_unforeseen_failure_costs_its_message_only(p):
    p.store = Breaking(p.store, KeyError("surprise"))
    out = p.handle([birth(), press(1, key=2), tele(2), press(3, key=3, unit="amb-02"), fix(4)], NOW)
    assert quarantined(p) == ["internal_error"]
    detail = p.store.reader().execute("select detail from quarantine").fetchone()[0]
    assert "KeyError" in detail
    assert len(out.acknowledge) == 5 and out.retry == []
    assert count(p, "status_events") == 2 and count(p, "positions") == 1
    assert p.view("amb-01", NOW)["status"]["key"] == 2 and p.view("amb-02", NOW)["status"]["key"] == 3


def test_a_store_that_cannot_write_keeps_every_message_for_later(p):
    p.store = Breaking(p.store, sqlite3.OperationalError("database or disk is full"))
    act = Action("amb-01", "status", NOW, "dina", key=2, reason="radio")
    out = p.handle([birth(), press(1, key=2), act, tele(2)], NOW)
    assert [i.topic for i in out.retry] == ["siaga/amb-01/conn", "siaga/amb-01/status", "siaga/amb-01/tele"]
    assert out.acknowledge == [] and quarantined(p) == [] and count(p, "status_events") == 0
    with pytest.raises(Exception, match="cannot write"):
        act.done.result(0)
    p.store = p.store.store  # the disk has room again: the same messages go in
    out = p.handle(out.retry, NOW)
    assert len(out.acknowledge) == 3 and count(p, "status_events") == 1


def test_seen_ids_are_ranges_bounded_in_number():
    seen = SeenIds()
    assert seen.contains(1, 5) is None  # nothing known yet: ask the store
    for seq in range(0, 400, 2):  # every other one: a gap each
        seen.add(1, seq)
    assert len(seen.ranges) == MAX_RANGES and seen.floor > (1, 0)
    assert seen.contains(1, 398) and seen.contains(1, 397) is False and seen.contains(1, 2) is None
    seen.add(1, 397)
    assert seen.ranges[-1] == (1, 396, 398)
    trust = Trust(max_boot_step=10, max_seq_step=1000)
    seen.check_step(11, 5, trust)
    with pytest.raises(Exception, match="boots ahead"):
        seen.check_step(12, 5, trust)
    with pytest.raises(Exception, match="ahead of the last known"):
        seen.check_step(1, 1399, trust)


def test_a_record_twice_in_one_message(p):
    rec = wire.encode_pos(1, 3, NOW - 5, -2.2, 113.9, 5.0, 90.0, 9, 0.9, NOW)
    other = wire.encode_pos(1, 3, NOW - 4, -2.3, 113.9, 5.0, 90.0, 9, 0.9, NOW)
    p.handle([birth(), Incoming("siaga/amb-01/pos", rec + rec, NOW)], NOW)
    assert count(p, "positions") == 1 and quarantined(p) == []
    p.handle(
        [
            Incoming(
                "siaga/amb-01/pos",
                wire.encode_pos(1, 4, NOW - 3, -2.2, 113.9, 5.0, 90.0, 9, 0.9, NOW) + other,
                NOW,
            )
        ],
        NOW,
    )
    p.handle(
        [
            Incoming(
                "siaga/amb-01/pos",
                wire.encode_pos(1, 9, NOW - 3, -2.2, 113.9, 5.0, 90.0, 9, 0.9, NOW) * 2 + other,
                NOW,
            )
        ],
        NOW,
    )
    assert quarantined(p) == ["conflicting_duplicate"] * 2 and count(p, "positions") == 1


def test_live_streams_are_bounded():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from gateway import stream
    from gateway.errors import TooManyStreams

    async def open_many():
        hub = stream.Hub()
        subs = [hub.subscribe() for _ in range(stream.SUBSCRIBERS_MAX)]
        with pytest.raises(TooManyStreams):
            hub.subscribe()
        hub.unsubscribe(subs[0])
        hub.subscribe()  # one closed: one more may open

    with ThreadPoolExecutor(1) as pool:  # a loop of its own: the browser tests keep one in this thread
        pool.submit(asyncio.run, open_many()).result()


def test_a_subscriber_that_falls_behind_loses_its_oldest_events_and_counts_them():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from gateway import stream

    async def flood():
        sub = stream.Subscriber(asyncio.get_running_loop())
        for n in range(stream.QUEUE_MAX + 5):
            sub.offer({"n": n})
        first = await sub.queue.get()
        return sub.dropped, first["n"], sub.queue.qsize()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, flood()).result() == (5, 5, stream.QUEUE_MAX - 1)
