"""`siaga db migrate-from-sqlite PATH`: a gateway's SQLite database (siaga.db) copied into
an empty PostgreSQL database, for a centre that moves to several gateways on one database
(docs/postgresql.md "Moving from SQLite").

The source is opened as the gateway opens it (gateway.store.Store: its migrations applied
first, said in the report; a database newer than this code is refused) and read in one
read transaction, so what is copied and what is counted are the same snapshot. The
target's schema is the gateway's (PgStore); every table is copied, 5,000 rows at a time,
by COPY FROM STDIN, in ONE PostgreSQL transaction: a failure anywhere leaves the target
as it was, empty. Identity columns keep their values and their sequences are set past
them. Before the commit every table's rows are counted on both sides; any difference and
nothing is committed.

SQLite's types are loose and PostgreSQL's are not. Old rows may hold what a column of
PostgreSQL cannot: each value is judged alone (`convert`):
- changed, as it means the same: a BLOB of UTF-8 in a text column becomes text, text in
  a bytea column bytes; a NUL character (which PostgreSQL's text cannot hold) becomes
  U+FFFD. Each kind is counted by column.
- a value that cannot be kept (text or a BLOB in a number column, a fraction in an
  integer column, a number outside an integer's range, Infinity): null, if the column may
  be null and is no key; else the row is left out. Both are counted and shown with the
  row's key.
The SQLite file keeps the originals.
"""

import math
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlite_utils import Database
from tqdm import tqdm

from gateway.errors import SiagaError
from gateway.store import Store, migrations
from gateway.store_pg import APP_KEY, LEADER_LOCK, PgStore, connect_kwargs, redacted

CHUNK_ROWS = 5000  # read from SQLite and written to COPY at a time: memory stays bounded
PROGRESS_ROWS = 20_000  # a table this big gets a progress bar (stderr)
EXAMPLES = 5  # rows shown per table and kind of change; the rest are counted
INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
# The SQLite storage classes each PostgreSQL type takes as they are (typeof()).
TAKES = {
    "text": ("text",),
    "bigint": ("integer",),
    "integer": ("integer",),
    "double precision": ("real", "integer"),
    "bytea": ("blob",),
}


class MigrationRefused(SiagaError):
    code = "migration_refused"


class Unfit(ValueError):
    """A value the PostgreSQL column cannot hold in any form that means the same."""


@dataclass
class Column:
    name: str
    type: str  # PostgreSQL's data_type
    nullable: bool
    key: bool  # part of the primary key


@dataclass
class Table:
    name: str
    columns: list
    identity: str | None = None  # the identity column, whose sequence is set after

    @property
    def key(self):
        return [c.name for c in self.columns if c.key]


@dataclass
class Report:
    source: str
    target: str
    applied: list  # SQLite migrations applied to the source first
    rows: dict = field(default_factory=dict)  # table -> (rows in SQLite, rows in PostgreSQL)
    changed: Counter = field(default_factory=Counter)  # (table, column, what) -> values
    nulled: Counter = field(default_factory=Counter)  # (table, column, why) -> values
    dropped: Counter = field(default_factory=Counter)  # (table, column, why) -> rows left out
    examples: dict = field(default_factory=dict)  # (table, column, why) -> [row keys]
    seconds: float = 0.0

    def note(self, table, column, why, key):
        shown = self.examples.setdefault((table, column, why), [])
        if len(shown) < EXAMPLES:
            shown.append(key)

    def left_out(self, table):
        return sum(n for (t, _, _), n in self.dropped.items() if t == table)

    def lines(self):
        return _report_lines(self)


# values
def convert(value, pg_type):
    """(value for the PostgreSQL column, what was changed or None); raises Unfit."""
    if value is None:
        return None, None
    if pg_type == "text":
        return _text(value)
    if pg_type == "bytea":
        if isinstance(value, bytes):
            return value, None
        return str(value).encode(), "text kept as bytes"
    if pg_type == "double precision":
        return _number(value)
    return _integer(value, pg_type)


def _text(value):
    change = None
    if isinstance(value, bytes):
        try:
            value, change = value.decode(), "bytes kept as text"
        except UnicodeDecodeError:
            raise Unfit("bytes that are no UTF-8 text") from None
    elif not isinstance(value, str):
        value, change = str(value), "number kept as text"
    if "\x00" in value:
        return value.replace("\x00", "\ufffd"), "NUL replaced by U+FFFD"
    return value, change


def _number(value):
    """A finite number: SQLite has already made numeric text a number in these columns
    (their affinity), so text left in one is no number. Infinity is refused as NaN is
    (SQLite stores NaN as null), as the bodies' were (store.py m010)."""
    if type(value) is int or type(value) is float and math.isfinite(value):
        return value, None
    raise Unfit(f"{_short(value)} is no finite number")


def _integer(value, pg_type):
    if type(value) is not int:
        raise Unfit(f"{_short(value)} is no whole number")
    lo, hi = INT_RANGES[pg_type]
    if not lo <= value <= hi:
        raise Unfit(f"{value} is outside {pg_type}'s range")
    return value, None


def _short(value, most=40):
    text = repr(value)
    return text if len(text) <= most else text[: most - 3] + "..."


# the two databases
def source_migrations(path):
    """The SQLite migrations the database at `path` lacks (read only); refuses what is
    not a Siaga gateway's database, or one newer than this code."""
    path = Path(path)
    if not path.is_file():
        raise MigrationRefused(f"{path}: no such file (the gateway's siaga.db, in its data folder)")
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise MigrationRefused(f"{path} is not an SQLite database")
    db = Database(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True))
    try:
        applied = [m.name for m in migrations.applied(db)]
        pending = [m.name for m in migrations.pending(db)]
    finally:
        db.close()
    if not applied:
        raise MigrationRefused(f"{path} is not a Siaga gateway's database (no siaga migrations in it)")
    known = {m.name for m in migrations.pending(Database(memory=True))}
    newer = [name for name in applied if name not in known]
    if newer:
        raise MigrationRefused(
            f"{path} was written by a newer siaga (migrations {', '.join(newer)} are unknown to this"
            " one): move it with that version; nothing was changed"
        )
    return pending


def pg_tables(conn):
    """Every table of the gateway's schema in PostgreSQL, in the order it was made."""
    rows = conn.execute(
        "select c.relname, a.attname, format_type(a.atttypid, null), not a.attnotnull,"
        " coalesce(a.attnum = any(i.indkey), false), a.attidentity <> ''"
        " from pg_class c join pg_attribute a on a.attrelid = c.oid"
        " left join pg_index i on i.indrelid = c.oid and i.indisprimary"
        " where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'"
        " and c.relname <> 'siaga_migrations' and a.attnum > 0 and not a.attisdropped"
        " order by c.oid, a.attnum"
    ).fetchall()
    tables = {}
    for table, column, pg_type, nullable, key, identity in rows:
        t = tables.setdefault(table, Table(table, []))
        t.columns.append(Column(column, pg_type, nullable, key))
        if identity:
            t.identity = column
    return list(tables.values())


def sqlite_columns(conn):
    names = [
        r[0]
        for r in conn.execute("select name from sqlite_master where type = 'table'")
        if not r[0].startswith(("_", "sqlite_"))
    ]
    return {t: {r[1] for r in conn.execute(f'pragma table_info("{t}")')} for t in names}


def check_same_schema(tables, source):
    """Both schemas list the same tables and columns (tests/test_postgres_store.py checks
    it of the code; this, of the file at hand)."""
    target = {t.name: {c.name for c in t.columns} for t in tables}
    if source != target:
        only = sorted(set(source) ^ set(target))
        columns = sorted(t for t in set(source) & set(target) if source[t] != target[t])
        raise MigrationRefused(
            f"the SQLite and PostgreSQL schemas differ (tables {only}, columns of {columns}): "
            "nothing was copied"
        )


def refuse_busy_or_full(db, tables, where):
    """In the copy's transaction: no gateway leads on the target, none can write to it
    until the commit, and it holds no data."""
    if not db.execute(
        "select pg_try_advisory_xact_lock(?::int4, ?::int4)", [APP_KEY, LEADER_LOCK]
    ).fetchone()[0]:
        raise MigrationRefused(
            f"a gateway is running on the database at {where} (it holds the leader's lock): stop every"
            " gateway first; nothing was copied"
        )
    db.execute("set local lock_timeout = '10s'")
    db.execute(f"lock table {', '.join(_q(t.name) for t in tables)} in exclusive mode")
    full = [t.name for t in tables if db.execute(f"select exists (select 1 from {_q(t.name)})").fetchone()[0]]
    if full:
        raise MigrationRefused(
            f"the database at {where} already holds data (in {', '.join(full)}): moving into it"
            " would mix two histories; give an empty database (createdb). Nothing was copied"
        )


# the copy
def migrate(path, database_url, progress=True, instance="siaga-migrate"):
    """Copy the gateway's SQLite database at `path` into the empty PostgreSQL database at
    `database_url`; the Report. Raises MigrationRefused (nothing copied, nothing kept)."""
    try:
        return _migrate(path, database_url, progress, instance)
    except sqlite3.Error as e:  # a damaged file, a disk error, a lock held too long
        raise MigrationRefused(f"{path}: {e} (SQLite); nothing was kept in PostgreSQL") from None


def _migrate(path, database_url, progress, instance):
    started = time.monotonic()
    pending = source_migrations(path)
    try:  # first alone: a plain error, not the pool's retries
        psycopg.connect(database_url, **connect_kwargs(database_url, instance)).close()
    except psycopg.Error as e:
        raise MigrationRefused(
            f"cannot reach the database at {redacted(database_url)}: {_said(e)}; nothing was changed"
        ) from None
    target = PgStore(database_url, instance, pool_max=2, wait_s=5.0)
    report = Report(str(path), target.where, pending)
    table = None
    try:
        with target.atomic() as db:
            tables = pg_tables(db.conn)
            refuse_busy_or_full(db, tables, target.where)
            if pending:  # as the gateway would at its start: this code's schema
                Store(path).close()
            source = sqlite3.connect(path)
            try:
                check_same_schema(tables, sqlite_columns(source))
                source.execute("begin")  # one snapshot: what is copied is what is counted
                for table in tables:
                    copy_table(source, db.conn, table, report, progress)
                table = None
                check_counts(source, db.conn, tables, report)
            finally:
                source.close()
    except psycopg.Error as e:
        where = f" copying {table.name}" if table else ""
        raise MigrationRefused(
            f"PostgreSQL refused{where}: {_said(e)}; nothing was kept (the transaction was rolled back)"
        ) from None
    finally:
        target.close()
    report.seconds = time.monotonic() - started
    return report


def copy_table(source, conn, table, report, progress):
    names = [c.name for c in table.columns]
    total = source.execute(f"select count(*) from {_q(table.name)}").fetchone()[0]
    fix = _fixer(source, table, report)
    cur = source.execute(f"select {', '.join(map(_q, names))} from {_q(table.name)}")
    bar = tqdm(
        total=total,
        desc=table.name,
        unit=" rows",
        unit_scale=True,
        file=sys.stderr,
        leave=False,
        disable=not progress or total < PROGRESS_ROWS,
    )
    copied = 0
    with (
        bar,
        conn.cursor() as pg,
        pg.copy(f"copy {_q(table.name)} ({', '.join(map(_q, names))}) from stdin") as copy,
    ):
        while rows := cur.fetchmany(CHUNK_ROWS):
            for row in rows:
                row = fix(row) if fix else row
                if row is not None:
                    copy.write_row(row)
                    copied += 1
            bar.update(len(rows))
    if table.identity:
        conn.execute(
            f"select setval(pg_get_serial_sequence(%s, %s), coalesce(max({_q(table.identity)}), 0) + 1,"
            f" false) from {_q(table.name)}",
            [_q(table.name), table.identity],
        )
    report.rows[table.name] = (total, copied)


def _fixer(source, table, report):
    """A function that makes a row fit the PostgreSQL table (None: leave it out), or None
    when every row fits as it is. SQLite says which columns hold values of another type
    (typeof); text columns are looked at in Python too, for NUL characters."""
    checks = []
    for c in table.columns:
        bad = f"typeof({_q(c.name)}) not in ({', '.join(repr(s) for s in TAKES[c.type])}, 'null')"
        if c.type == "double precision":
            bad += f" or abs({_q(c.name)}) >= 9e999"  # Infinity
        if c.type == "integer":  # SQLite's integers are bigint's
            lo, hi = INT_RANGES[c.type]
            bad += f" or {_q(c.name)} not between {lo} and {hi}"
        if not c.nullable:
            bad += f" or {_q(c.name)} is null"
        checks.append(f"sum(case when {bad} then 1 else 0 end)")
    counts = source.execute(f"select {', '.join(checks)} from {_q(table.name)}").fetchone()
    look = [
        (i, c) for i, (c, n) in enumerate(zip(table.columns, counts, strict=True)) if n or c.type == "text"
    ]
    if not look:
        return None
    keys = [i for i, c in enumerate(table.columns) if c.key]

    def fix(row):
        out = None
        for i, c in look:
            value = row[i]
            if c.type == "text" and (value is None or type(value) is str and "\x00" not in value):
                continue  # the usual case, quickly
            try:
                if value is None:
                    raise Unfit("null in a column that may not be")
                new, change = convert(value, c.type)
            except Unfit as e:
                key = {table.columns[k].name: row[k] for k in keys}
                if c.nullable and not c.key:
                    new, change = None, None
                    report.nulled[(table.name, c.name, str(e))] += 1
                    report.note(table.name, c.name, str(e), key)
                else:
                    report.dropped[(table.name, c.name, str(e))] += 1
                    report.note(table.name, c.name, str(e), key)
                    return None
            if change:
                report.changed[(table.name, c.name, change)] += 1
            if new is not value:
                out = out or list(row)
                out[i] = new
        return out or row

    return fix


def check_counts(source, conn, tables, report):
    """Before the commit: each table's rows in PostgreSQL are SQLite's, less those left
    out (each counted); else nothing is committed."""
    wrong = []
    for t in tables:
        in_sqlite = source.execute(f"select count(*) from {_q(t.name)}").fetchone()[0]
        in_pg = conn.execute(f"select count(*) from {_q(t.name)}").fetchone()[0]
        report.rows[t.name] = (in_sqlite, in_pg)
        left_out = report.left_out(t.name)
        if in_pg != in_sqlite - left_out:
            wrong.append(f"{t.name}: {in_sqlite} in SQLite, {in_pg} in PostgreSQL, {left_out} left out")
    if wrong:
        raise MigrationRefused(f"the counts differ ({'; '.join(wrong)}): nothing was committed")


def _q(name):
    return f'"{name}"'


def _said(error):
    """A database's error message on one line."""
    return " ".join(str(error).split())


# the report
def _report_lines(r):
    brought = f"brought up to date first: {', '.join(r.applied)} applied" if r.applied else "up to date"
    out = [
        f"from {r.source} (SQLite, {brought})",
        f"  to {r.target} (PostgreSQL)",
        "",
        f"{'table':<20} {'sqlite':>12} {'postgresql':>12}",
    ]
    for name, (a, b) in r.rows.items():
        out.append(f"{name:<20} {a:>12,} {b:>12,}")
    a, b = (sum(n[i] for n in r.rows.values()) for i in (0, 1))
    out += [
        f"{'all':<20} {a:>12,} {b:>12,}",
        "",
        f"copied and counted in {r.seconds:.1f} s, in one transaction",
    ]
    for (table, column, what), n in sorted(r.changed.items()):
        out.append(f"changed: {table}.{column}: {n:,} × {what}")
    for (table, column, why), n in sorted(r.nulled.items()):
        out.append(f"set to null: {table}.{column}: {n:,} × {why}; e.g. {_keys(r, (table, column, why))}")
    for (table, column, why), n in sorted(r.dropped.items()):
        out.append(f"left out: {table}: {n:,} rows, {column}: {why}; e.g. {_keys(r, (table, column, why))}")
    if r.changed or r.nulled or r.dropped:
        out.append(f"the SQLite file keeps the originals: {r.source}")
    return out


def _keys(report, which):
    return "; ".join(
        "(" + ", ".join(f"{k}={v!r}" for k, v in key.items()) + ")" for key in report.examples[which]
    )
