"""Other gateways' changes, from PostgreSQL's LISTEN/NOTIFY: each commit that saves a
unit's snapshot notifies `siaga_unit` with "UNIT VERSION" (store_pg.py), delivered at
the commit to every listening gateway; this one hands the newer ones to its ingest
worker, which reads the row and publishes it on its own live stream. A registry change
notifies `siaga_registry`. While the connection is down nothing arrives, so each
(re)connection starts by asking for everything to be read again.
"""

import logging
import threading
import time

import psycopg

from .leadership import dedicated_connection, first_line
from .pipeline import Changed
from .store_pg import REGISTRY_CHANNEL, UNIT_CHANNEL

log = logging.getLogger("siaga.notifications")

RETRY_MAX_S = 5.0


class Notifications:
    def __init__(self, url, instance, deliver, known, clock=time.time):
        """deliver(Changed): to the ingest worker; known(unit) -> the version this
        gateway holds (its own commits come back too, and go no further)."""
        self.url, self.instance = url, instance
        self.deliver, self.known = deliver, known
        self.clock = clock
        self.listening = False
        self.last_at = None  # when the last notification came
        self.received = 0
        self.error = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="siaga-notifications", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=3)

    def health(self):
        return {
            "listening": self.listening,
            "last_notify_at": self.last_at,
            "notifications": self.received,
            **({"error": self.error} if self.error else {}),
        }

    def _run(self):
        wait = 0.5
        while not self.stopping.is_set():
            try:
                with dedicated_connection(self.url, self.instance) as conn:
                    conn.execute(f"listen {UNIT_CHANNEL}")
                    conn.execute(f"listen {REGISTRY_CHANNEL}")
                    self.listening, self.error, wait = True, None, 0.5
                    self.deliver(Changed(everything=True))  # what came while nobody listened
                    while not self.stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._note(note)
            except psycopg.Error as e:
                self.listening = False
                self.error = first_line(e)
                log.warning("%s: notifications stopped (%s); listening again", self.instance, self.error)
                self.stopping.wait(wait)
                wait = min(RETRY_MAX_S, wait * 2)
        self.listening = False

    def _note(self, note):
        self.last_at = self.clock()
        self.received += 1
        if note.channel == REGISTRY_CHANNEL:
            self.deliver(Changed(None))
            return
        unit, _, version = note.payload.partition(" ")
        try:
            version = int(version)
        except ValueError:
            return
        if version > self.known(unit):
            self.deliver(Changed(unit, version))
