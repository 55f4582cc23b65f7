"""Fan-out of unit changes to live-stream subscribers (Server-Sent Events).

The ingest worker thread publishes; each subscriber is an asyncio queue on the HTTP
server's event loop. A subscriber that falls too far behind loses its oldest events, never
blocks ingest, and is told: its stream sends an event `dropped` with how many, and the
map reads every unit again.
"""

import asyncio
import threading
import time

from .errors import TooManyStreams

QUEUE_MAX = 1000
SUBSCRIBERS_MAX = 500  # live streams at once (a 112 centre has tens of screens); more: 503


class Subscriber:
    def __init__(self, loop):
        self.loop = loop
        self.queue = asyncio.Queue(QUEUE_MAX)
        self.dropped = 0

    def offer(self, event):
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


class Hub:
    def __init__(self):
        self._subs = set()
        self._lock = threading.Lock()

    def subscribe(self):
        sub = Subscriber(asyncio.get_running_loop())
        with self._lock:
            if len(self._subs) >= SUBSCRIBERS_MAX:
                raise TooManyStreams(f"{SUBSCRIBERS_MAX} live streams are open; close one and try again")
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub):
        with self._lock:
            self._subs.discard(sub)

    def publish(self, event):
        """Offer `event` to every subscriber, stamped with when it left (`emitted`, Unix
        seconds), so a client can measure how late it arrives."""
        event = {**event, "emitted": time.time()}
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.loop.call_soon_threadsafe(sub.offer, event)
