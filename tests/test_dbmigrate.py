"""`siaga db migrate-from-sqlite`: a gateway's real SQLite database (made by the real
pipeline, logins and tokens) moved into a real PostgreSQL database by the real command,
then used there: the same views, the same logins, new rows after the copied ones. A
second move into it, and a move that fails halfway, leave it as it was."""

import sqlite3
import subprocess
import sys
import time

import psycopg
import pytest
from conftest import REPO
from test_judging import birth, fix, msg, press

from gateway import auth
from gateway.availability import Limits
from gateway.pipeline import Action, Pipeline
from gateway.statuses import StatusScheme
from gateway.store import Store
from gateway.store_pg import PgStore
from provisioning.dbmigrate import MigrationRefused, migrate

NOW = int(time.time())
UNITS = ("amb-01", "amb-02")
TABLES = (
    "units positions status_events conn_events unit_state quarantine settings_pushes"
    " dispatcher_actions users api_tokens sessions telemetry"
).split()


def pipeline(store):
    return Pipeline(store, StatusScheme(), Limits())


def tele(seq, unit="amb-01"):
    return msg(
        "tele", {"_type": "tele", "boot": 1, "seq": seq, "t": NOW - 5, "sent": NOW - 5, "heap_free": 9}, unit
    )


@pytest.fixture
def centre(tmp_path):
    """A gateway's SQLite database with rows in every table; (path, the units' views,
    a session id and an API token made in it)."""
    path = tmp_path / "siaga.db"
    store = Store(path)
    for unit in UNITS:
        store.upsert_unit({"unit_id": unit, "kind": "ambulance", "callsign": unit.upper(), "agency": ""})
    p = pipeline(store)
    items = [birth(), birth(unit="amb-02"), *(fix(seq, t=NOW - 60 + seq) for seq in range(1, 30))]
    items += [press(40, key=2), press(41, key=3, unit="amb-02"), tele(42), press(1, unit="nobody-9")]
    p.handle(items, NOW)
    assign = Action("amb-01", "assign", NOW + 1, "dina", incident={"lat": -2.2, "lon": 113.9, "kind": "fire"})
    p.handle([assign], NOW + 1)
    store.push_settings("amb-01", {"report_max_period_s": 20})
    with store.atomic() as db:
        auth.add_user(db, "dina", "dispatcher", "a long enough password")
        sid, _ = auth.new_session(db, "dina", 3600, NOW)
        token, _ = auth.create_token(db, "viewer", "cad")
    views = {u: p.view(u, NOW + 2) for u in UNITS}
    store.close()
    return path, views, sid, token


def siaga_migrate(path, url):
    return subprocess.run(
        [sys.executable, "-m", "siaga", "db", "migrate-from-sqlite", str(path), "--database-url", url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def counts_sqlite(path):
    with sqlite3.connect(path) as db:
        return {t: db.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}


def counts_pg(url):
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}


def test_a_gateway_database_moves_to_postgresql_and_works_there(centre, database_url):
    path, views, sid, token = centre
    run = siaga_migrate(path, database_url)
    assert run.returncode == 0, run.stderr
    assert "(SQLite, up to date)" in run.stdout and "copied and counted in" in run.stdout
    counts = counts_sqlite(path)
    assert all(counts.values()), counts  # the fixture filled every table
    assert counts_pg(database_url) == counts
    for table, n in counts.items():  # the command's table says so too
        assert any(line.split() == [table, f"{n:,}", f"{n:,}"] for line in run.stdout.splitlines())

    store = PgStore(database_url)
    p = pipeline(store)
    assert {u: p.view(u, NOW + 2) for u in UNITS} == views
    reader = store.reader()
    assert auth.session(reader, sid, NOW + 10)[0].name == "dina"
    assert auth.token_principal(reader, token).name == "cad"
    # new rows get ids past the copied ones
    identities = ("quarantine", "dispatcher_actions", "api_tokens")
    ids = {t: reader.execute(f"select max(id) from {t}").fetchone()[0] for t in identities}
    p.handle([press(2, unit="nobody-9")], NOW + 3)
    with store.atomic() as db:
        assert auth.create_token(db, "viewer", "cad-2")[1]["id"] == ids["api_tokens"] + 1
    assert reader.execute("select max(id) from quarantine").fetchone()[0] == ids["quarantine"] + 1
    release = Action("amb-01", "release", NOW + 4, "dina")
    p.handle([release], NOW + 4)
    assert release.done.result(0)[0] == ids["dispatcher_actions"] + 1
    store.close()

    again = siaga_migrate(path, database_url)
    assert again.returncode == 2 and "already holds data" in again.stderr
    assert counts_pg(database_url)["status_events"] == counts["status_events"]


def test_a_failure_halfway_leaves_the_target_empty(centre, database_url):
    """Two telemetry rows whose unit ids differ only by a NUL and U+FFFD: once the NUL is
    replaced they are one key twice, which PostgreSQL refuses, late in the copy."""
    path = centre[0]
    with sqlite3.connect(path) as db:
        for unit in ("amb-01\x00", "amb-01\ufffd"):
            db.execute("insert into telemetry values (?, 1, 1, 0, 0, '{}')", [unit])
    run = siaga_migrate(path, database_url)
    assert run.returncode == 2, run.stdout
    assert "copying telemetry" in run.stderr and "nothing was kept" in run.stderr
    assert set(counts_pg(database_url).values()) == {0}


def test_old_rows_of_loose_types_are_changed_nulled_or_left_out_and_counted(tmp_path, database_url):
    """What SQLite's loose types let old rows hold, each value judged alone: kept as it
    means the same, else null where a column may be, else the row is left out."""
    path = tmp_path / "siaga.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "insert into units (unit_id, callsign, home_lat, home_lon) values ('old-01', ?, 'abc', ?)",
            ["AMB\x0001", float("inf")],
        )
        position = (
            "insert into positions (unit_id, boot, seq, t, lat, sats) values ('old-01', 1, ?, ?, -2.2, ?)"
        )
        db.execute(position, [1, NOW, 2**40])  # sats: an integer's range
        db.execute(position, [2, NOW + 0.5, 9])  # t, a key: a fraction
        db.execute(
            "insert into quarantine (topic, detail, payload) values (?, ?, 'text')",
            [b"\xff", "caf\u00e9".encode()],
        )
        db.execute("insert into settings_pushes values ('old-01', 'v2', '{}', 0)")  # version, a key
    report = migrate(path, database_url, progress=False)
    assert report.rows == {
        **{t: (0, 0) for t in TABLES},
        "units": (1, 1),
        "positions": (2, 1),
        "quarantine": (1, 1),
        "settings_pushes": (1, 0),
    }
    assert report.changed == {
        ("units", "callsign", "NUL replaced by U+FFFD"): 1,
        ("quarantine", "detail", "bytes kept as text"): 1,
        ("quarantine", "payload", "text kept as bytes"): 1,
    }
    assert report.nulled == {
        ("units", "home_lat", "'abc' is no finite number"): 1,
        ("units", "home_lon", "inf is no finite number"): 1,
        ("positions", "sats", "1099511627776 is outside integer's range"): 1,
        ("quarantine", "topic", "bytes that are no UTF-8 text"): 1,
    }
    assert report.dropped == {
        ("positions", "t", f"{NOW + 0.5!r} is no whole number"): 1,
        ("settings_pushes", "version", "'v2' is no whole number"): 1,
    }
    text = "\n".join(report.lines())
    assert f"left out: positions: 1 rows, t: {NOW + 0.5!r} is no whole number; e.g. (unit_id='old-01'" in text
    assert "the SQLite file keeps the originals" in text
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select callsign, home_lat, home_lon from units").fetchone() == (
            "AMB\ufffd01",
            None,
            None,
        )
        assert conn.execute("select topic, detail, payload from quarantine").fetchone() == (
            None,
            "café",
            b"text",
        )


def test_an_old_database_is_brought_up_to_date_first_and_a_newer_one_refused(tmp_path, database_url):
    from sqlite_utils import Database

    from gateway.store import migrations

    path = tmp_path / "siaga.db"
    with sqlite3.connect(path) as conn:
        db = Database(conn)
        migrations.apply(db, stop_before="m011_assignment_estimates")
        db["units"].insert({"unit_id": "amb-01", "kind": "ambulance"})
    report = migrate(path, database_url, progress=False)
    assert report.applied == ["m011_assignment_estimates", "m012_unit_state_version"]
    assert (
        "(SQLite, brought up to date first: m011_assignment_estimates, m012_unit_state_version applied)"
        in report.lines()[0]
    )
    assert report.rows["units"] == (1, 1)

    with sqlite3.connect(path) as conn:
        conn.execute(
            "insert into _sqlite_migrations (migration_set, name, applied_at)"
            " values ('siaga', 'm099_from_later', '')"
        )
    with pytest.raises(MigrationRefused, match="newer siaga .*m099_from_later"):
        migrate(path, database_url, progress=False)
    with pytest.raises(MigrationRefused, match="no such file"):
        migrate(tmp_path / "nothing.db", database_url, progress=False)


def test_a_database_a_gateway_runs_on_is_refused(centre, database_url):
    """Its leader holds the advisory lock (gateway/leadership.py): even with no rows yet,
    nothing is copied under a running gateway."""
    from gateway.store_pg import APP_KEY, LEADER_LOCK

    with psycopg.connect(database_url, autocommit=True) as leader:
        leader.execute("select pg_advisory_lock(%s::int4, %s::int4)", [APP_KEY, LEADER_LOCK])
        with pytest.raises(MigrationRefused, match="a gateway is running on the database"):
            migrate(centre[0], database_url, progress=False)
    assert set(counts_pg(database_url).values()) == {0}


def test_counts_that_differ_commit_nothing(centre, database_url, monkeypatch):
    """A row lost on the way without being counted (here: a fixer that drops every
    position silently) is found by the counts, and nothing is committed."""
    from provisioning import dbmigrate

    made = dbmigrate._fixer

    def losing(source, table, report):
        fix = made(source, table, report)
        return (lambda row: None) if table.name == "positions" else fix

    monkeypatch.setattr(dbmigrate, "_fixer", losing)
    with pytest.raises(MigrationRefused, match="counts differ .*positions: 29 in SQLite, 0 in PostgreSQL"):
        migrate(centre[0], database_url, progress=False)
    assert set(counts_pg(database_url).values()) == {0}
