"""The gateway's storage: the same tables, keys and SQL on two engines.

SQLite (sqlite-utils: migrations, WAL) is the embedded default, one gateway on one
machine; the database opens in Datasette as it is. PostgreSQL (store_pg.py) is for
several gateways sharing one database (docs/high-availability.md), chosen by the
`database_url` setting: `open_store` picks.

Every uplink table is keyed by (unit_id, boot, seq) and written with
`ON CONFLICT DO NOTHING`, so a message stored twice is stored once. The SQL below is
written once for both engines: `?` and `:name` parameters (the PostgreSQL store turns
them into psycopg's), identifiers that are words of SQL ("user") in double quotes.
"""

import contextlib
import functools
import json
import operator
import sqlite3
import threading
import time
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from . import availability, unit_settings, validate
from .identity import SeenIds

migrations = Migrations("siaga")


@migrations()
def m001_initial(db):
    db["units"].create(
        {
            "unit_id": str,
            "callsign": str,
            "kind": str,
            "agency": str,
            "home_name": str,
            "home_lat": float,
            "home_lon": float,
            "created_at": float,
        },
        pk="unit_id",
    )
    db["positions"].create(
        {
            "unit_id": str,
            "boot": int,
            "seq": int,
            "t": int,
            "lat": float,
            "lon": float,
            "speed": float,
            "heading": float,
            "sats": int,
            "hdop": float,
            "sent": int,
            "received_at": float,
        },
        pk=("unit_id", "boot", "seq"),
    )
    db["positions"].create_index(["unit_id", "t"])
    db["status_events"].create(
        {
            "unit_id": str,
            "boot": int,
            "seq": int,
            "key": int,
            "pressed_at": int,
            "sent": int,
            "received_at": float,
            "source": str,
            "lat": float,
            "lon": float,
        },
        pk=("unit_id", "boot", "seq"),
    )
    db["status_events"].create_index(["unit_id", "pressed_at"])
    db["conn_events"].create(
        {
            "unit_id": str,
            "boot": int,
            "seq": int,
            "type": str,
            "t": int,
            "received_at": float,
            "body": str,
        },
        pk=("unit_id", "boot", "seq", "type"),
    )
    db["unit_state"].create({"unit_id": str, "state": str, "updated_at": float}, pk="unit_id")
    db["quarantine"].create(
        {
            "id": int,
            "received_at": float,
            "topic": str,
            "unit_id": str,
            "reason": str,
            "detail": str,
            "payload": bytes,
        },
        pk="id",
    )
    db["quarantine"].create_index(["reason"])


@migrations()
def m002_settings_pushes(db):
    db["settings_pushes"].create(
        {"unit_id": str, "version": int, "values_json": str, "pushed_at": float},
        pk=("unit_id", "version"),
    )


@migrations()
def m003_dispatcher_actions(db):
    db["dispatcher_actions"].create(
        {
            "id": int,
            "unit_id": str,
            "t": float,
            "action": str,
            "user": str,
            "key": int,
            "reason": str,
            "incident_lat": float,
            "incident_lon": float,
            "incident_kind": str,
            "incident_note": str,
        },
        pk="id",
    )
    db["dispatcher_actions"].create_index(["unit_id", "t"])


@migrations()
def m004_positions_one_btree(db):
    """Positions in one B-tree, keyed (unit, fix time, boot, seq): a replayed record has
    its original fix time, so this key still stores a message once, and it serves the
    track queries by time without a second index. Measured: ingest is bound by this
    insert (make bench, gateway.ingest_reports_per_s)."""
    db.execute(
        "create table positions_new (unit_id text, boot integer, seq integer, t integer, lat float,"
        " lon float, speed float, heading float, sats integer, hdop float, sent integer,"
        " received_at float, primary key (unit_id, t, boot, seq)) without rowid"
    )
    db.execute(
        "insert or ignore into positions_new select unit_id, boot, seq, t, lat, lon, speed, heading,"
        " sats, hdop, sent, received_at from positions"
    )
    db.execute("drop table positions")
    db.execute("alter table positions_new rename to positions")


@migrations()
def m005_unit_status_scheme(db):
    db["units"].add_column("status_scheme", str, not_null_default="default")


@migrations()
def m006_logins(db):
    """Logins, API tokens and sessions (gateway/auth.py). Only hashes of passwords,
    tokens and session ids are kept."""
    db["users"].create(
        {"name": str, "role": str, "password_hash": str, "created_at": float, "disabled_at": float},
        pk="name",
    )
    db["api_tokens"].create(
        {"id": int, "name": str, "role": str, "token_hash": str, "created_at": float, "revoked_at": float},
        pk="id",
    )
    db["api_tokens"].create_index(["token_hash"], unique=True)
    db["sessions"].create(
        {"id_hash": str, "user": str, "csrf": str, "created_at": float, "expires_at": float},
        pk="id_hash",
    )
    db["sessions"].create_index(["user"])


@migrations()
def m007_unit_decommissioned(db):
    """When a unit was decommissioned (`siaga unit decommission`; null: in service). Its
    history stays; the broker refuses it."""
    db["units"].add_column("decommissioned_at", float)


@migrations()
def m008_telemetry(db):
    """What units say of their link, modem, memory and flash (the `tele` message)."""
    db["telemetry"].create(
        {"unit_id": str, "boot": int, "seq": int, "t": int, "received_at": float, "body": str},
        pk=("unit_id", "boot", "seq"),
    )
    db["telemetry"].create_index(["unit_id", "received_at"])


@migrations()
def m009_unit_seen_ids(db):
    """The message identities each unit has used (gateway/identity.py), saved with its
    state in the same transaction."""
    db["unit_state"].add_column("seen", bytes)


@migrations()
def m010_no_infinite_numbers(db):
    """Bodies stored before every number was checked at the edge may hold NaN or
    Infinity, which no JSON reply can carry: they become null."""

    def clean(text):
        return json.dumps(json.loads(text, parse_constant=lambda name: None))

    for table, column, pk in (
        ("conn_events", "body", ("unit_id", "boot", "seq", "type")),
        ("telemetry", "body", ("unit_id", "boot", "seq")),
        ("settings_pushes", "values_json", ("unit_id", "version")),
    ):
        where = f"[{column}] like '%NaN%' or [{column}] like '%Infinity%'"
        for row in list(db.query(f"select * from [{table}] where {where}")):
            db[table].update(tuple(row[k] for k in pk), {column: clean(row[column])})


@migrations()
def m011_assignment_estimates(db):
    """An assignment's estimated drive time and road distance when it was made, and how
    (`road` over the imported map, `straight` when none could be given)."""
    db["dispatcher_actions"].add_column("eta_s", float)
    db["dispatcher_actions"].add_column("road_m", float)
    db["dispatcher_actions"].add_column("eta_method", str)


@migrations()
def m012_unit_state_version(db):
    """Each unit's snapshot counts its saves: with several gateways on one database a
    gateway whose copy is older reads the row again (SqlStore.lock_units), and the
    version is what a change's notification carries (docs/high-availability.md)."""
    db["unit_state"].add_column("version", int, not_null_default=0)


QUARANTINE_KEEP_BYTES = 1024  # of a refused payload: enough to see what it was
QUARANTINE_MAX_ROWS = 100_000  # past it the oldest go (counts by reason are in /health)
PURGE_ROWS = 10_000  # retention deletes this many rows per transaction: ingest never waits long
RETAINED = (("positions", "t"), ("quarantine", "received_at"), ("telemetry", "received_at"))
ROW_KEYS = {"positions": "unit_id, t, boot, seq"}  # SQLite: positions have no rowid (m004)


def _state_row(state, seen, version):
    return (
        state.unit_id,
        json.dumps(availability.to_json(state)),
        time.time(),
        seen.to_bytes(),
        version,
    )


STATE_COLUMNS = ("unit_id", "state", "updated_at", "seen", "version")
ROWS_PER_STATEMENT = 256  # at most, and within each engine's limit on parameters


def insert_rows(db, head, rows, tail="", max_parameters=999):
    """`head values (?, ...), (?, ...), ... tail` for all `rows` (tuples of one length):
    a few statements of many rows each, sized in powers of two so that a handful of
    prepared statements serve every batch. The rows go in in their order, as with
    executemany, so ON CONFLICT DO NOTHING still keeps the first of equal keys.

    Not executemany on the hot path: sqlite3's releases and retakes the GIL around every
    row, and while paho's network thread runs each retake can wait out a switch interval
    (5 ms). Measured in the gateway draining a backlog: 1 to 70 ms for 500 rows that way,
    about 1 ms as statements of many rows, which release the GIL once each (and are one
    round trip each to PostgreSQL)."""
    if not rows:
        return
    width = len(rows[0])
    most = min(ROWS_PER_STATEMENT, max_parameters // width)
    i = 0
    while i < len(rows):
        size = 1 << (min(most, len(rows) - i).bit_length() - 1)
        db.execute(_rows_sql(head, width, size, tail), [v for row in rows[i : i + size] for v in row])
        i += size


@functools.lru_cache(maxsize=64)
def _rows_sql(head, width, size, tail):
    row = "(" + ", ".join("?" * width) + ")"
    return f"{head} values {', '.join([row] * size)}{tail}"


@functools.lru_cache(maxsize=16)
def _upsert_sql(table, columns, pk):
    """(head, tail) of an upsert of rows with these columns, `pk` among them."""
    names = ", ".join(f'"{c}"' for c in columns)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != pk)
    return f'insert into "{table}" ({names})', f' on conflict ("{pk}") do update set {updates}'


@functools.lru_cache(maxsize=16)
def _insert_sql(table, columns, ignore=False):
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * len(columns))
    return f'insert into "{table}" ({names}) values ({marks})' + (" on conflict do nothing" if ignore else "")


class ThreadReader:
    """A Database per thread, opened on first use (sqlite3 connections are not shared)."""

    def __init__(self, path):
        self.path = path
        self.local = threading.local()

    def _db(self):
        db = getattr(self.local, "db", None)
        if db is None:
            db = self.local.db = Database(sqlite3.connect(self.path))
        return db

    def query(self, sql, params=None):
        return self._db().query(sql, params or [])

    def execute(self, sql, params=None):
        return self._db().execute(sql, params or [])


class SqlStore:
    """What both engines share: every query, in SQL both take. An engine gives `_db()`,
    the database of the calling thread's transaction (or, outside one, one that reads),
    `atomic()`, `reader()`, `lock_units()` and `_notify()`."""

    kind = "sql"
    shared = False  # whether other gateways may write the same database (PostgreSQL)
    max_parameters = 999
    # What a store that cannot write raises: the message is not to blame, so it is not
    # quarantined but tried again later (pipeline.py).
    faults = (sqlite3.OperationalError, OSError, MemoryError)

    def _db(self):
        raise NotImplementedError

    def _notify(self, db, channel, payload):
        """Tell the other gateways, at the commit (PostgreSQL's NOTIFY); nothing with one."""

    # registry
    def units(self):
        return {row["unit_id"]: row for row in self._db().query("select * from units")}

    def unit(self, unit_id):
        rows = list(self._db().query("select * from units where unit_id = ?", [unit_id]))
        return rows[0] if rows else None

    def upsert_unit(self, row):
        row = dict(row)
        existing = self.unit(row["unit_id"])
        row.setdefault("created_at", existing["created_at"] if existing else time.time())
        head, tail = _upsert_sql("units", tuple(row), "unit_id")
        with self.atomic() as db:
            db.execute(_rows_sql(head, len(row), 1, tail), list(row.values()))
            self._notify(db, "siaga_registry", row["unit_id"])
        return self.unit(row["unit_id"])

    def set_decommissioned(self, unit_id, at):
        """When the unit left the fleet, or None: back in service (in the caller's
        transaction: the pipeline's, as a dispatcher action)."""
        db = self._db()
        db.execute("update units set decommissioned_at = ? where unit_id = ?", [at, unit_id])
        self._notify(db, "siaga_registry", unit_id)

    # uplink
    POSITION_COLUMNS = ("boot", "seq", "t", "lat", "lon", "speed", "heading", "sats", "hdop", "sent")
    POSITION_INSERT = (  # the hot path: a batch's rows in a few statements (insert_rows)
        "insert into positions (unit_id, boot, seq, t, lat, lon, speed, heading, sats, hdop,"
        " sent, received_at)"
    )
    IGNORE = " on conflict do nothing"

    _position_values = operator.itemgetter(*POSITION_COLUMNS)

    @classmethod
    def position_rows(cls, unit_id, records, received_at):
        values = cls._position_values
        return [(unit_id, *values(r), received_at) for r in records]

    def add_position_rows(self, rows):
        self._insert_rows(self.POSITION_INSERT, rows, self.IGNORE)

    def _insert_rows(self, head, rows, tail):
        """`head values (...), ... tail` for every row, in the transaction (insert_rows)."""
        insert_rows(self._db(), head, rows, tail, self.max_parameters)

    STATUS_COLUMNS = (
        "unit_id",
        "boot",
        "seq",
        "key",
        "pressed_at",
        "sent",
        "received_at",
        "source",
        "lat",
        "lon",
    )

    def add_status(self, unit_id, body, received_at, source="crew"):
        pressed_at = body["t"] + body.get("ms", 0) / 1000
        values = [unit_id, body["boot"], body["seq"], body["key"], pressed_at, body.get("sent")]
        values += [received_at, source, body.get("lat"), body.get("lon")]
        self._db().execute(_insert_sql("status_events", self.STATUS_COLUMNS, ignore=True), values)

    def add_conn(self, unit_id, body, received_at):
        columns = ("unit_id", "boot", "seq", "type", "t", "received_at", "body")
        values = [unit_id, body["boot"], body["seq"], body["_type"], body.get("t"), received_at]
        values.append(json.dumps(body))
        self._db().execute(_insert_sql("conn_events", columns, ignore=True), values)

    def add_telemetry(self, unit_id, body, received_at):
        columns = ("unit_id", "boot", "seq", "t", "received_at", "body")
        values = [unit_id, body["boot"], body["seq"], body["t"], received_at, json.dumps(body)]
        self._db().execute(_insert_sql("telemetry", columns, ignore=True), values)

    def quarantine(self, topic, unit_id, reason, detail, payload, received_at):
        """Keep a refused message: its reason, and its first QUARANTINE_KEEP_BYTES."""
        if len(payload) > QUARANTINE_KEEP_BYTES:
            detail = f"{detail} (first {QUARANTINE_KEEP_BYTES} of {len(payload)} bytes kept)"
        self._db().execute(
            "insert into quarantine (received_at, topic, unit_id, reason, detail, payload)"
            " values (?, ?, ?, ?, ?, ?)",
            [
                received_at,
                _text(topic, 200),
                unit_id and _text(unit_id, 200),
                reason,
                _text(detail, 500),
                bytes(payload[:QUARANTINE_KEEP_BYTES]),
            ],
        )

    def trim_quarantine(self, keep=QUARANTINE_MAX_ROWS):
        """Forget all but the newest `keep` quarantined messages; how many went."""
        with self.atomic(durable=False) as db:
            return db.execute(
                "delete from quarantine where id <= (select max(id) from quarantine) - ?", [keep]
            ).rowcount

    # what is stored under a message identity (gateway/identity.py, validate.signature)
    def signature(self, mtype, unit_id, boot, seq, sig=None):
        """The signature of the message of this type stored under (unit, boot, seq), or
        None. For a position `sig` gives its fix time, part of the table's key."""
        db, key = self._db(), [unit_id, boot, seq]
        if mtype == "pos":
            cols = ", ".join(validate.POSITION_SIGNATURE)
            sql = f"select {cols} from positions where unit_id = ? and boot = ? and seq = ? and t = ?"
            row = db.execute(sql, [*key, sig[0]]).fetchone()
            return tuple(row) if row else None
        if mtype == "status":
            sql = (
                "select key, pressed_at, lat, lon from status_events"
                " where unit_id = ? and boot = ? and seq = ?"
            )
            row = db.execute(sql, key).fetchone()
            return tuple(row) if row else None
        if mtype == "tele":
            sql = "select body from telemetry where unit_id = ? and boot = ? and seq = ?"
        else:  # birth, bye, will
            sql = "select body from conn_events where unit_id = ? and boot = ? and seq = ? and type = ?"
            key.append(mtype)
        row = db.execute(sql, key).fetchone()
        return validate.signature(mtype, json.loads(row[0])) if row else None

    # settings pushed to units
    def push_settings(self, unit_id, values, remove=()):
        """Record a push: the settings pushed so far, with `values` set and the names in
        `remove` taken out (back to the unit's own). Returns (version, the whole set),
        which is what the unit is sent. What an older gateway kept that a unit cannot
        take is left out (unit_settings.known)."""
        with self.atomic() as db:
            self.lock_units([unit_id])  # two gateways pushing at once: one after the other
            last = self.last_push(unit_id)
            merged = unit_settings.known(last["values"]) if last else {}
            merged.update(values)
            for name in remove:
                merged.pop(name, None)
            version = (last["version"] if last else 0) + 1
            db.execute(
                "insert into settings_pushes (unit_id, version, values_json, pushed_at) values (?, ?, ?, ?)",
                [unit_id, version, json.dumps(merged), time.time()],
            )
        return version, merged

    def last_push(self, unit_id):
        sql = (
            "select version, values_json from settings_pushes where unit_id = ? order by version desc limit 1"
        )
        row = self._db().execute(sql, [unit_id]).fetchone()
        return {"version": row[0], "values": json.loads(row[1])} if row else None

    ACTION_COLUMNS = (
        "unit_id",
        "t",
        "action",
        "user",
        "key",
        "reason",
        "incident_lat",
        "incident_lon",
        "incident_kind",
        "incident_note",
        "eta_s",
        "road_m",
        "eta_method",
    )

    def add_action(self, act):
        inc = act.incident or {}
        est = act.estimate or {}
        values = [act.unit_id, act.t, act.action, act.user, act.key, act.reason]
        values += [inc.get("lat"), inc.get("lon"), inc.get("kind"), inc.get("note")]
        values += [est.get("eta_s"), est.get("road_m"), est.get("method")]
        sql = _insert_sql("dispatcher_actions", self.ACTION_COLUMNS) + " returning id"
        return self._db().execute(sql, values).fetchall()[0][0]

    def purge(self, cutoff, rows=PURGE_ROWS):
        """Forget positions with a fix time, and quarantined messages and telemetry
        received, before `cutoff`; status events, dispatcher actions and connection
        events stay. At most `rows` rows a transaction, so ingest never waits behind a
        long delete; how many went."""
        gone = 0
        for table, column in RETAINED:
            sql = self._bounded_delete(table, column)
            while True:
                with self.atomic(durable=False) as db:
                    n = db.execute(sql, [cutoff, rows]).rowcount
                gone += n
                if n < rows:
                    break
        return gone

    def _bounded_delete(self, table, column):
        """Delete at most ? rows of `table` with `column` before ?."""
        key = ROW_KEYS.get(table, "rowid")
        return f"delete from {table} where ({key}) in (select {key} from {table} where {column} < ? limit ?)"

    # unit state snapshots
    def save_states(self, states):
        """The snapshots, (state, seen identities, version) of each unit a batch
        touched, in its transaction. On the hot path, so one statement per chunk."""
        rows = [_state_row(state, seen, version) for state, seen, version in states]
        if rows:
            head, tail = _upsert_sql("unit_state", STATE_COLUMNS, "unit_id")
            self._insert_rows(head, rows, tail + self.STATE_SAVED)

    STATE_SAVED = ""  # after a snapshot's upsert (PostgreSQL: its notification)

    def load_states(self, unit_ids=None):
        """(unit -> UnitState, unit -> SeenIds, unit -> version) as last saved: every
        unit's, or those of `unit_ids`."""
        sql = "select unit_id, state, seen, version from unit_state"
        params = []
        if unit_ids is not None:
            if not unit_ids:
                return {}, {}, {}
            sql += f" where unit_id in ({', '.join('?' * len(unit_ids))})"
            params = list(unit_ids)
        states, seen, versions = {}, {}, {}
        for unit_id, state, ids, version in self._db().execute(sql, params).fetchall():
            if state is None:  # a row made only to be locked (lock_units): nothing saved yet
                continue
            states[unit_id] = availability.from_json(json.loads(state))
            seen[unit_id] = SeenIds.from_bytes(ids)
            versions[unit_id] = version
        return states, seen, versions

    def lock_units(self, unit_ids):
        """In the caller's transaction: lock these units' snapshots against other
        gateways until it ends, and return their versions (unit -> version, 0 for none
        saved). None: no other gateway writes this database, so nothing to check."""
        return None

    def close(self):
        pass


def _text(value, most):
    """A string for a text column: at most `most` characters, without NUL (which
    PostgreSQL's text cannot hold)."""
    return str(value)[:most].replace("\x00", "\ufffd")


class Store(SqlStore):
    """SQLite: one file in the data folder, one writing connection shared by the ingest
    worker and the HTTP API (the lock keeps their transactions apart), and a reading
    connection per thread for what is read outside a transaction (WAL: it sees what is
    committed), so no thread reads on the writing connection while another writes."""

    kind = "sqlite"

    def __init__(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.where = self.path
        self.db = Database(sqlite3.connect(self.path, check_same_thread=False))
        self.lock = threading.RLock()
        self.db.enable_wal()
        self._durable = None  # the synchronous setting in force: see atomic()
        self.max_parameters = self.db.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        migrations.apply(self.db)
        self.local = threading.local()  # whether this thread is in a transaction (atomic)
        self._reads = ThreadReader(self.path)

    def _db(self):
        return self.db if getattr(self.local, "tx", False) else self._reads

    def reader(self):
        """Read-only access for the HTTP API's threads: one connection per thread."""
        return ThreadReader(self.path)

    @contextlib.contextmanager
    def atomic(self, durable=True):
        """One transaction on the writing connection, which the ingest worker and the
        HTTP API share: the lock keeps their transactions apart.

        durable: the WAL is synced at the commit (synchronous=FULL), so what the gateway
        then acknowledges (a press's `ack`, after which the unit forgets it; a dispatcher's
        action; a login) survives a power cut of its machine, not only a crash of its
        process. durable=False (synchronous=NORMAL) is for batches of position reports and
        telemetry only: a power cut may take the last of them back (a crash does not), and
        the next durable commit syncs them too. The sync costs a batch of positions about
        a fifth of its rate and doubles the press-to-map p99 under that load (measured
        with gateway.ingest_ratio_vs_raw_paho)."""
        with self.lock:
            if durable is not self._durable:
                self.db.execute("PRAGMA synchronous=" + ("FULL" if durable else "NORMAL"))
                self._durable = durable
            outer = getattr(self.local, "tx", False)
            self.local.tx = True
            try:
                with self.db.atomic():
                    yield self.db
            finally:
                self.local.tx = outer

    def describe(self):
        return {"kind": self.kind, "path": self.path}

    def close(self):
        self.db.conn.close()


def open_store(data_dir, database_url="", instance="gateway"):
    """The gateway's store: PostgreSQL at `database_url`, else SQLite in `data_dir`."""
    if database_url:
        from .store_pg import PgStore

        return PgStore(database_url, instance)
    return Store(Path(data_dir) / "siaga.db")


def assignments(db, unit_id=None, since=None, until=None):
    where, args = ["action = 'assign'"], {}
    conditions = (("unit_id = :u", "u", unit_id), ("t >= :a", "a", since), ("t < :b", "b", until))
    for cond, name, value in conditions:
        if value is not None:
            where.append(cond)
            args[name] = value
    return [
        dict(r)
        for r in db.query(f"select * from dispatcher_actions where {' and '.join(where)} order by t", args)
    ]


def assignment_ends(db, unit_ids):
    """unit -> times of its assigns and releases (each ends the assignment before it)."""
    out = {}
    marks = ",".join("?" * len(unit_ids))
    sql = (
        f"select unit_id, t from dispatcher_actions where action in ('assign', 'release')"
        f" and unit_id in ({marks}) order by t"
    )
    for unit_id, t in db.execute(sql, list(unit_ids)).fetchall():
        out.setdefault(unit_id, []).append(t)
    return out


def crew_presses(db, unit_ids, since):
    out = {}
    marks = ",".join("?" * len(unit_ids))
    sql = (
        f"select unit_id, key, pressed_at from status_events where unit_id in ({marks})"
        f" and pressed_at >= ? order by pressed_at, boot, seq"
    )
    for unit_id, key, pressed_at in db.execute(sql, [*unit_ids, since]).fetchall():
        out.setdefault(unit_id, []).append({"key": key, "pressed_at": pressed_at})
    return out


def track(db, unit_id, since, until):
    sql = (
        "select t, lat, lon, speed, heading from positions where unit_id = ? and t >= ? and t <= ?"
        " order by t, boot, seq"
    )
    return db.execute(sql, [unit_id, since, until]).fetchall()


def quarantine_counts(db):
    """Messages kept in quarantine, by reason (within the retention time)."""
    return dict(db.execute("select reason, count(*) from quarantine group by reason").fetchall())


def device(db, unit_id):
    """What the unit said of itself in its latest birth: firmware, board, reset, settings."""
    sql = (
        "select body from conn_events where unit_id = ? and type = 'birth'"
        " order by boot desc, seq desc limit 1"
    )
    row = db.execute(sql, [unit_id]).fetchone()
    if not row:
        return None
    body = json.loads(row[0])
    out = {k: body.get(k) for k in ("fw", "board", "reset", "cfg", "boot", "dropped", "torn")}
    sql = "select body, received_at from telemetry where unit_id = ? order by received_at desc limit 1"
    tele = db.execute(sql, [unit_id]).fetchone()
    if tele:
        out["telemetry"] = dict(json.loads(tele[0]), received_at=tele[1])
    return out


def statuses(db, unit_id, limit=100):
    """A unit's status history, crew presses and dispatcher changes, newest first."""
    sql = (
        'select key, pressed_at, received_at, boot, seq, source, null as reason, null as "user"'
        " from status_events where unit_id = :u"
        " union all select key, t, t, null, id, 'dispatcher', reason, \"user\""
        " from dispatcher_actions where unit_id = :u and action = 'status'"
        " order by pressed_at desc, received_at desc limit :n"
    )
    return [dict(r) for r in db.query(sql, {"u": unit_id, "n": limit})]
