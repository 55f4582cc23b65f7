"""Storage on a real SQLite file and a real PostgreSQL database (the store_kind
parameter): idempotent writes, retention; and a SQLite database that any SQLite tool
(Datasette, the sqlite3 shell) opens as it is."""

import sqlite3
import sys
import time

from conftest import REPO

from gateway.availability import Limits
from gateway.pipeline import Incoming, Pipeline
from gateway.statuses import StatusScheme
from gateway.store import Store

sys.path.insert(0, str(REPO / "firmware" / "lib"))
import wire  # noqa: E402  (the unit's own encoder: what a unit sends)


def pipeline(store):
    store.upsert_unit({"unit_id": "amb-01", "kind": "ambulance", "callsign": "AMBULANS 01", "agency": ""})
    return store, Pipeline(store, StatusScheme(), Limits())


def pos(seq, t, boot=1):
    return Incoming(
        "siaga/amb-01/pos", wire.encode_pos(boot, seq, t, -2.21, 113.92, 5.0, 90.0, 9, 0.9, t), time.time()
    )


def status(seq, t, key=3):
    payload = wire.encode_json("status", 1, seq, key=key, t=t, sent=t)
    return Incoming("siaga/amb-01/status", payload, time.time())


def count(store, table):
    return store.reader().execute(f"select count(*) from {table}").fetchone()[0]


def test_a_message_stored_twice_is_stored_once(new_store):
    store, p = pipeline(new_store())
    now = time.time()
    batch = [pos(1, int(now) - 10), pos(2, int(now) - 5), status(3, int(now) - 4)]
    p.handle(batch, now)
    out = p.handle(batch + [pos(1, int(now) - 10)], now)
    assert count(store, "positions") == 2 and count(store, "status_events") == 1
    assert len(out.downlinks) == 1  # the repeated status is acknowledged again


def test_retention_forgets_old_positions_and_keeps_statuses(new_store):
    store, p = pipeline(new_store())
    now = time.time()
    old, new = int(now - 100 * 86400), int(now - 3600)
    p.handle([pos(1, old), pos(2, new), status(3, old)], now)
    gone = store.purge(now - 90 * 86400)
    assert gone == 1 and count(store, "positions") == 1 and count(store, "status_events") == 1


def test_the_database_opens_in_any_sqlite_tool(tmp_path):
    store, p = pipeline(Store(tmp_path / "siaga.db"))
    p.handle([pos(1, int(time.time()))], time.time())
    db = sqlite3.connect(f"file:{tmp_path / 'siaga.db'}?mode=ro", uri=True)
    assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}
    assert {
        "units",
        "positions",
        "status_events",
        "conn_events",
        "dispatcher_actions",
        "quarantine",
        "unit_state",
        "settings_pushes",
    } <= tables
    assert db.execute("select unit_id, lat, lon from positions").fetchall() == [("amb-01", -2.21, 113.92)]


def test_impossible_or_foreign_messages_are_quarantined_and_change_nothing(new_store):
    store, p = pipeline(new_store())
    now = time.time()
    future = int(now + 3 * 86400)
    spoofed = wire.encode_json("status", 1, 7, key=3, t=int(now), sent=int(now), unit="amb-02")
    bad = [
        Incoming("siaga/amb-01/status", spoofed, now),  # the payload names another unit
        pos(8, future),  # a fix three days ahead
        Incoming("siaga/amb-09/pos", wire.encode_pos(1, 9, int(now), -2.2, 113.9, 1, 1, 9, 1, int(now)), now),
        Incoming("siaga/amb-01/pos", b"\x50" + bytes(28), now),  # fix time 0
    ]
    p.handle(bad, now)
    rows = store.reader().execute("select reason, topic from quarantine order by id").fetchall()
    assert [r[0] for r in rows] == ["unit_mismatch", "future_time", "unknown_unit", "impossible_time"]
    assert dict(p.refused) == {"unit_mismatch": 1, "future_time": 1, "impossible_time": 1, "unknown_unit": 1}
    assert count(store, "positions") == 0 and count(store, "status_events") == 0
    assert p.states == {}


def test_a_unit_follows_the_status_scheme_its_registry_entry_names(new_store):
    from gateway.statuses import Status, StatusScheme

    store = new_store()
    rescue = StatusScheme(
        (
            Status(1, "ready", "Siap", "Ready", "available"),
            Status(2, "standby", "Siaga di markas", "Standby at base", "out_of_service"),
            Status(0, "emergency", "Darurat", "Emergency", "emergency", long_press=True),
        )
    )
    for unit_id, scheme in (("amb-01", "default"), ("sar-01", "rescue")):
        store.upsert_unit(
            {"unit_id": unit_id, "kind": "rescue", "callsign": unit_id, "agency": "", "status_scheme": scheme}
        )
    p = Pipeline(store, {"default": StatusScheme(), "rescue": rescue}, Limits())
    now = time.time()
    for unit_id in ("amb-01", "sar-01"):
        payload = wire.encode_json("status", 1, 1, key=2, t=int(now), sent=int(now))
        p.handle(
            [
                Incoming(
                    f"siaga/{unit_id}/conn", wire.encode_json("birth", 1, 0, t=int(now), sent=int(now)), now
                ),
                Incoming(f"siaga/{unit_id}/status", payload, now),
            ],
            now,
        )
    assert p.view("amb-01", now)["availability"] == "available"
    sar = p.view("sar-01", now)
    assert sar["availability"] == "out_of_service" and sar["status"]["label"] == "Siaga di markas"


def test_a_batch_with_a_press_is_synced_at_its_commit_and_positions_alone_are_not(tmp_path):
    # SQLite's synchronous setting in force at each commit: FULL (2) syncs the WAL, so a
    # press the gateway then acknowledges survives a power cut; NORMAL (1) for positions
    def synchronous():
        return store.db.execute("pragma synchronous").fetchone()[0]

    store, p = pipeline(Store(tmp_path / "siaga.db"))
    now = int(time.time())
    p.handle([pos(1, now - 10), pos(2, now - 9)], now)
    assert synchronous() == 1
    p.handle([pos(3, now - 8), status(4, now - 7)], now)
    assert synchronous() == 2
    p.handle([pos(5, now - 6)], now)
    assert synchronous() == 1
    with store.atomic():  # the registry, logins, dispatchers' actions: always synced
        assert synchronous() == 2
    assert count(store, "positions") == 4 and count(store, "status_events") == 1
