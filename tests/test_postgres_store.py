"""Several gateways on one real PostgreSQL database (the store, the pipeline and the
notifications, in-process; the gateways as processes are in tests/test_ha.py): the same
tables as SQLite's, an action on one gateway and a press on another never lose each
other, each gateway hears of the other's changes, and a database switchover (the old
primary stopped, a streaming replica promoted) loses nothing."""

import sqlite3
import threading
import time

import psycopg
import pytest
from test_judging import birth, fix, msg, press

from gateway.availability import Limits
from gateway.notifications import Notifications
from gateway.pipeline import Action, Changed, Pipeline
from gateway.statuses import StatusScheme
from gateway.store import Store
from gateway.store_pg import PgStore
from provisioning.postgres import multi_host_url, start_primary, start_replica

NOW = int(time.time())


def register(store, *units):
    for unit in units:
        store.upsert_unit({"unit_id": unit, "kind": "ambulance", "callsign": unit.upper(), "agency": ""})


def pipeline(store):
    return Pipeline(store, StatusScheme(), Limits())


def columns_sqlite(path):
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("select name from sqlite_master where type = 'table'")]
    out = {t: {r[1] for r in db.execute(f"pragma table_info({t})")} for t in tables}
    db.close()
    return {t: c for t, c in out.items() if not t.startswith(("_", "sqlite_"))}


def columns_pg(url):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_name, column_name from information_schema.columns where table_schema = 'public'"
        ).fetchall()
    out = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    out.pop("siaga_migrations")
    return out


def test_both_stores_have_the_same_tables_and_columns(tmp_path, database_url):
    Store(tmp_path / "siaga.db").close()
    PgStore(database_url).close()
    assert columns_pg(database_url) == columns_sqlite(tmp_path / "siaga.db")


def test_two_gateways_starting_at_once_migrate_once(database_url):
    stores = []
    threads = [threading.Thread(target=lambda: stores.append(PgStore(database_url))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from siaga_migrations").fetchone()[0] == 1
    for s in stores:
        s.close()


def test_an_action_on_one_gateway_and_a_press_on_the_other_both_count(database_url):
    a, b = PgStore(database_url, "a"), PgStore(database_url, "b")
    register(a, "amb-01")
    leader, standby = pipeline(a), pipeline(b)
    leader.handle([birth(), press(1, key=2)], NOW)
    assert leader.view("amb-01", NOW)["status"]["key"] == 2
    # a dispatcher on the standby assigns the unit: the standby's copy is older than the row
    act = Action("amb-01", "assign", NOW + 1, "dina", incident={"lat": -2.2, "lon": 113.9, "kind": "fire"})
    standby.handle([act], NOW + 1)
    assert act.done.result(0)[1]["assignment"] is not None and act.done.result(0)[1]["status"]["key"] == 2
    # the leader's next press is folded into the assigned state, not into its stale copy
    leader.handle([press(2, key=3, t=NOW + 2)], NOW + 2)
    view = leader.view("amb-01", NOW + 2)
    assert view["assignment"] is not None and view["status"]["key"] == 3
    # and the standby, told of the change, reads it
    standby.handle([Changed("amb-01", leader.versions["amb-01"])], NOW + 2)
    assert standby.view("amb-01", NOW + 2) == view
    a.close(), b.close()


def test_actions_and_presses_at_once_on_two_gateways_lose_nothing(database_url):
    a, b = PgStore(database_url, "a"), PgStore(database_url, "b")
    register(a, "amb-01", "amb-02")
    leader, standby = pipeline(a), pipeline(b)
    leader.handle([birth(), birth(unit="amb-02")], NOW)

    def presses():
        for seq in range(1, 41):
            unit = "amb-01" if seq % 2 else "amb-02"
            leader.handle([press(seq, key=2 + seq % 2, unit=unit), fix(1000 + seq, unit=unit)], NOW)

    def actions():
        for i in range(20):
            unit = "amb-02" if i % 2 else "amb-01"
            standby.handle([Action(unit, "release", NOW, "dina")], NOW)

    threads = [threading.Thread(target=presses), threading.Thread(target=actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # every press and every action is in the snapshot the database holds
    states, _, versions = a.load_states()
    for unit in ("amb-01", "amb-02"):
        with psycopg.connect(database_url) as conn:
            presses_stored = conn.execute(
                "select count(*) from status_events where unit_id = %s", [unit]
            ).fetchone()[0]
            actions_stored = conn.execute(
                "select count(*) from dispatcher_actions where unit_id = %s", [unit]
            ).fetchone()[0]
        assert presses_stored == 20 and actions_stored == 10
        # one save per batch or action that touched the unit: none was overwritten by a stale copy
        assert versions[unit] >= 1 + 20 + 10
    a.close(), b.close()


def test_each_gateway_hears_of_the_others_changes(database_url):
    a, b = PgStore(database_url, "a"), PgStore(database_url, "b")
    register(a, "amb-01")
    leader, standby = pipeline(a), pipeline(b)
    heard = []
    notes = Notifications(database_url, "b", heard.append, lambda unit: standby.versions.get(unit, 0))
    notes.start()
    try:
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:  # it asks for everything once it listens
            time.sleep(0.02)
        assert heard[0].everything
        leader.handle([birth(), press(1, key=2)], NOW)
        while len(heard) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert heard[1] == Changed("amb-01", leader.versions["amb-01"])
        published = []
        standby.on_change = published.append
        standby.handle(heard, NOW)
        assert [v["status"]["key"] for v in published] == [2]
        register(a, "amb-02")  # a registry change reaches the other too
        while len(heard) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert heard[2] == Changed(None)
        standby.handle(heard[2:], NOW)
        assert "amb-02" in standby.registry
        assert notes.health()["listening"] and notes.health()["last_notify_at"] is not None
    finally:
        notes.stop()
        a.close(), b.close()


@pytest.fixture
def replicated():
    """A primary and its streaming replica, each a real PostgreSQL of the test's own."""
    primary = start_primary()
    try:
        replica = start_replica(primary)
    except BaseException:
        primary.remove()
        raise
    yield primary, replica
    replica.remove()
    primary.remove()


def test_a_database_switchover_during_ingest_loses_nothing(replicated):
    primary, replica = replicated
    store = PgStore(multi_host_url([primary, replica]))
    register(store, "amb-01")
    p = pipeline(store)
    p.handle([birth()], NOW)
    pending, acked, seq = [], 0, 0
    switched = False
    deadline = time.monotonic() + 60
    while acked < 300 and time.monotonic() < deadline:
        seq += 1
        pending.append(press(seq, key=2 + seq % 3) if seq % 5 == 0 else fix(seq, t=NOW - 400 + seq))
        if seq == 120 and not switched:  # while batches go on: the old primary goes (its WAL
            # all sent) and the replica takes over
            switch = threading.Thread(target=lambda: (primary.stop(), replica.promote()))
            switch.start()
            switched = True
        out = p.handle(pending, NOW)
        acked += len(out.acknowledge)
        pending = out.retry  # what the store could not take waits, in order, and goes again
        if pending:
            time.sleep(0.2)
    switch.join()
    assert switched and not pending and acked == seq
    assert replica.is_primary()
    with psycopg.connect(replica.url()) as conn:
        presses = conn.execute("select count(*) from status_events").fetchone()[0]
        fixes = conn.execute("select count(*) from positions").fetchone()[0]
    assert presses == seq // 5 and fixes == seq - seq // 5
    store.close()
    after = PgStore(replica.url())  # the state a gateway starting now reads
    assert pipeline(after).view("amb-01", NOW)["status"]["key"] == 2 + (seq - seq % 5) % 3
    after.close()


def test_a_message_with_a_nul_byte_is_quarantined_not_a_fault(database_url):
    store = PgStore(database_url)
    register(store, "amb-01")
    p = pipeline(store)
    out = p.handle([birth(), msg("status", b'{"_type": "status", "boot": 1, "seq": 2, "x": "\\u0000"}')], NOW)
    assert out.retry == [] and len(out.acknowledge) == 2
    store.close()


def test_two_dispatchers_on_two_gateways_cannot_both_assign_one_unit(database_url):
    a, b = PgStore(database_url, "a"), PgStore(database_url, "b")
    register(a, "amb-01")
    gateways = [pipeline(a), pipeline(b)]
    gateways[0].handle([birth(), press(1, key=2), fix(2)], NOW)
    for p in gateways:
        p.handle([Changed("amb-01", gateways[0].versions["amb-01"])], NOW)
        assert p.view("amb-01", NOW)["availability"] == "available"
    incident = {"lat": -2.2, "lon": 113.9, "kind": "fire"}
    acts = [Action("amb-01", "assign", NOW, user, incident=incident, only_if_available=True) for user in "xy"]
    start = threading.Barrier(2)

    def assign(p, act):
        start.wait()
        p.handle([act], NOW)

    threads = [threading.Thread(target=assign, args=pair) for pair in zip(gateways, acts, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [act.done.exception(0) for act in acts]
    assert sorted(type(e).__name__ for e in errors) == ["NoneType", "NotAvailable"]
    with psycopg.connect(database_url) as conn:
        assert (
            conn.execute("select count(*) from dispatcher_actions where action = 'assign'").fetchone()[0] == 1
        )
    a.close(), b.close()
