"""Which of several gateways on one PostgreSQL database ingests: the one that holds an
advisory lock, on a connection of its own kept for nothing else.

The leader runs the MQTT session (the one persistent client id, so the broker's queued
messages wait for whichever gateway leads), retention and the snapshots' writes of
ingest; every gateway serves the API, the page and the live stream. A standby asks for
the lock every `poll_s`; PostgreSQL lets it go the moment the leader's connection ends
(a killed process's socket closes; a dead host's is found by the keepalives below), so
the standby leads within about a second of it.

A leader whose lock connection fails stops leading first (its MQTT session goes) and
then tries to take the lock again: after a database failover either gateway may win it,
never both at once. What it had not committed, the broker sends again to the next
leader; what it had, the next one finds stored (the tables' keys) and changes nothing.
"""

import logging
import threading
import time

import psycopg

from .store_pg import APP_KEY, LEADER_LOCK, connect_kwargs

log = logging.getLogger("siaga.leadership")

POLL_S = 0.5
RETRY_MAX_S = 5.0
# libpq's keepalives and time-out on the lock's connection: a leader cut off from the
# database (a dead host, a network gone) notices within seconds, and so does the server.
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 8000,
}
SERVER_KEEPALIVE = (
    "set tcp_keepalives_idle = 5; set tcp_keepalives_interval = 2; set tcp_keepalives_count = 2"
)


def dedicated_connection(url, instance):
    """A connection of its own, kept open (the leader's lock, the notifications), with
    keepalives on both ends: a dead peer is found within seconds either way."""
    conn = psycopg.connect(url, **connect_kwargs(url, instance), **KEEPALIVE)
    conn.execute(SERVER_KEEPALIVE)
    return conn


def first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


HOLDER = (
    "select a.application_name, a.client_addr::text, a.backend_start from pg_locks l"
    " join pg_stat_activity a on a.pid = l.pid where l.locktype = 'advisory' and l.granted"
    " and l.classid = %s::oid and l.objid = %s::oid and l.objsubid = 2"
)


class Leadership:
    def __init__(self, url, instance, on_lead, on_follow, poll_s=POLL_S, clock=time.time):
        self.url, self.instance = url, instance
        self.on_lead, self.on_follow = on_lead, on_follow
        self.poll_s = poll_s
        self.clock = clock
        self.role = "standby"
        self.since = clock()
        self.holder = None  # the leader's name (application_name), as last seen
        self.error = None  # why the lock's connection is down, while it is
        self.changes = 0  # times this gateway became leader or stopped leading
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="siaga-leadership", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        if self.role == "leader":
            self._become("standby")

    def health(self):
        return {
            "role": self.role,
            "since": self.since,
            "leader": self.holder,
            "lock_connection": "ok" if self.error is None else self.error,
        }

    def _become(self, role):
        if role == self.role:
            return
        self.role, self.since = role, self.clock()
        self.changes += 1
        log.warning("%s: %s now", self.instance, role)
        (self.on_lead if role == "leader" else self.on_follow)()

    def _run(self):
        wait = POLL_S
        while not self.stopping.is_set():
            try:
                with dedicated_connection(self.url, self.instance) as conn:
                    self.error, wait = None, POLL_S
                    self._hold(conn)
            except psycopg.Error as e:
                self.error = first_line(e)
                if self.role == "leader":
                    log.error("%s: lost the leader's lock connection (%s)", self.instance, self.error)
                    self._become("standby")  # first: the lock went with the connection
                else:
                    log.info(
                        "%s: cannot reach the database for the leader's lock: %s", self.instance, self.error
                    )
                self.stopping.wait(wait)
                wait = min(RETRY_MAX_S, wait * 2)

    def _hold(self, conn):
        """Take the lock when it is free, then hold it while the connection lives."""
        while not self.stopping.is_set():
            if self.role == "standby":
                got = conn.execute("select pg_try_advisory_lock(%s::int4, %s::int4)", [APP_KEY, LEADER_LOCK])
                if got.fetchone()[0]:
                    self.holder = f"siaga {self.instance}"
                    self._become("leader")
                else:
                    row = conn.execute(HOLDER, [APP_KEY, LEADER_LOCK]).fetchone()
                    self.holder = row[0] if row else None
            else:
                conn.execute("select 1")  # still there: so is the lock
            self.stopping.wait(self.poll_s)
