"""SQLite storage with sqlite-utils: schema migrations, WAL, idempotent writes.

Every uplink table is keyed by (unit_id, boot, seq) and written with INSERT OR IGNORE,
so a message stored twice is stored once. The database opens in Datasette as it is.
"""

import json
import sqlite3
import time
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .availability import UnitState

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


def _state_row(state):
    data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(state).items()}
    return {"unit_id": state.unit_id, "state": json.dumps(data), "updated_at": time.time()}


def _state_from_row(row):
    data = json.loads(row["state"])
    return UnitState(**{k: (tuple(v) if k.endswith("_order") else v) for k, v in data.items()})


class Store:
    def __init__(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.db = Database(sqlite3.connect(self.path, check_same_thread=False))
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        migrations.apply(self.db)

    def reader(self):
        """A separate connection for a reading thread (the HTTP API)."""
        return Database(sqlite3.connect(self.path, check_same_thread=False))

    def atomic(self):
        return self.db.atomic()

    # registry
    def units(self):
        return {row["unit_id"]: row for row in self.db["units"].rows}

    def unit(self, unit_id):
        rows = list(self.db["units"].rows_where("unit_id = ?", [unit_id]))
        return rows[0] if rows else None

    def upsert_unit(self, row):
        row = dict(row)
        existing = self.unit(row["unit_id"])
        row.setdefault("created_at", existing["created_at"] if existing else time.time())
        self.db["units"].upsert(row, pk="unit_id")
        return self.unit(row["unit_id"])

    # uplink
    def add_positions(self, unit_id, records, received_at):
        rows = [dict(r, unit_id=unit_id, received_at=received_at) for r in records]
        self.db["positions"].insert_all(rows, ignore=True)

    def add_status(self, unit_id, body, received_at, source="crew"):
        self.db["status_events"].insert(
            {
                "unit_id": unit_id,
                "boot": body["boot"],
                "seq": body["seq"],
                "key": body["key"],
                "pressed_at": body["t"],
                "sent": body.get("sent"),
                "received_at": received_at,
                "source": source,
                "lat": body.get("lat"),
                "lon": body.get("lon"),
            },
            ignore=True,
        )

    def add_conn(self, unit_id, body, received_at):
        self.db["conn_events"].insert(
            {
                "unit_id": unit_id,
                "boot": body["boot"],
                "seq": body["seq"],
                "type": body["_type"],
                "t": body.get("t"),
                "received_at": received_at,
                "body": json.dumps(body),
            },
            ignore=True,
        )

    def quarantine(self, topic, unit_id, reason, detail, payload, received_at):
        self.db["quarantine"].insert(
            {
                "received_at": received_at,
                "topic": topic,
                "unit_id": unit_id,
                "reason": reason,
                "detail": detail,
                "payload": bytes(payload),
            }
        )

    def quarantine_counts(self):
        sql = "select reason, count(*) from quarantine group by reason"
        return dict(self.db.execute(sql).fetchall())

    # unit state snapshots
    def save_states(self, states):
        self.db["unit_state"].upsert_all([_state_row(s) for s in states], pk="unit_id")

    def load_states(self):
        return {row["unit_id"]: _state_from_row(row) for row in self.db["unit_state"].rows}


def statuses(db, unit_id, limit=100):
    """A unit's status history, newest first, from any connection."""
    sql = (
        "select key, pressed_at, received_at, boot, seq, source from status_events"
        " where unit_id = ? order by pressed_at desc, boot desc, seq desc limit ?"
    )
    return [dict(r) for r in db.query(sql, [unit_id, limit])]
