# The unit: reads GNSS and the status keys, reports over MQTT, shows the crew whether
# each press was delivered. One supervisor keeps the link up; every link fault is an
# OSError (or EOFError from a closed stream) and leads to a reconnect with backoff.
# No MemoryError ends it: each task catches it, the unit frees what it can rebuild (heap.py,
# out_of_memory) and goes on; a press is noted in fixed slots before anything is allocated
# for it, and kept until it is in the outbox (docs/firmware-memory.md).
import asyncio
import gc
import random
import time

from micropython import const

import wire
from heap import Restart, borrow
from outbox import sending, status_payload, status_record

LINK_ERRORS = (OSError, EOFError, asyncio.TimeoutError)
# The tasks the watchdog guards, and how long each may go without a sign of life (ms):
# the link task waits at most a publish time-out or a backoff between its beats.
CRITICAL_TASKS = {"keys": 5000, "housekeeping": 5000, "link": 60000}
PRESS_SLOTS = 8  # presses noted, not yet in the outbox (only while the heap is starved)
_RETRY_MS = const(200)  # a task that ran out of heap waits this long before it tries again


class Unit:
    """A unit's state is set up by startup.py (once, at start; then its code is given
    back to the heap), which lists every attribute."""

    def next_seq(self):
        seq = self.seq
        self.seq += 1
        return seq

    def seq_apart(self):
        """A seq for a message the outbox never holds (telemetry, birth and will,
        goodbye): the outbox counts it acknowledged at once, so that its acknowledged
        ranges stay whole instead of growing by one with each such message."""
        seq = self.next_seq()
        self.outbox.skip(self.boot, seq)
        return seq

    # crew
    def pressed(self, key, long_press):
        """The keypad's callback: the press is noted (nothing allocated), then recorded."""
        if self._press_count >= PRESS_SLOTS:  # only when the heap stayed starved: counted
            self.outbox.dropped["status"] += 1
            return
        i = (self._press_first + self._press_count) % PRESS_SLOTS
        self._press_key[i] = key | (0x80 if long_press else 0)
        self._press_at[i] = time.ticks_ms()
        self._press_count += 1
        self.retry_now = True  # no waiting out a long backoff with a press to deliver
        self.wake = True
        self._take_presses()

    def _take_presses(self):
        """Each noted press into the outbox, oldest first; one that runs out of heap stays
        noted, with its record (so its seq), and is tried again _RETRY_MS later."""
        while self._press_count:
            try:
                self._record(self._press_first)
            except MemoryError:
                self._press_retry = time.ticks_add(time.ticks_ms(), _RETRY_MS)
                self.out_of_memory("keys")
                return

    def _record(self, i):
        rec = self._press_rec[i]
        if rec is None:
            t, ms = self.clock.split()
            ms -= time.ticks_diff(time.ticks_ms(), self._press_at[i])  # when it was pressed
            t, ms = t + ms // 1000, ms % 1000
            f = self.fixes
            lat, lon = (f.lat, f.lon) if f.valid else (None, None)
            rec = self._press_rec[i] = status_record(
                self.boot, self.next_seq(), self._press_key[i] & 0x7F, t, ms, lat, lon
            )
        self.outbox.add_press(rec)  # kept from here on, whatever happens next
        self._press_rec[i] = None
        self._press_first = (i + 1) % PRESS_SLOTS
        self._press_count -= 1
        self.newest_press = rec[1]
        self.policy.force("status")
        self.feedback.pressed(rec[2], rec[1])
        long_press = self._press_key[i] & 0x80
        self.log("key %d pressed%s: seq %d" % (rec[2], " (long)" if long_press else "", rec[1]))

    # memory
    def out_of_memory(self, where):
        """An allocation failed in `where`: the reserve goes back to the heap, what can be
        rebuilt is let go (the positions held for sending, which are on flash; the MQTT
        client's buffer and its resend copies), counted, and the unit goes on. When the
        failures go on for longer than mem_reset_s, it gives up: main.py resets it."""
        self.outbox.shed()
        if self.client is not None:
            self.client.shed()
        starved = self.heap.failed()
        try:
            self.log("memory: allocation failed in %s; recovered (%d)" % (where, self.heap.failures))
        except MemoryError:
            pass
        if starved:
            self._give_up()

    def _give_up(self):
        """The last resort: the noted presses go to flash, then main.py resets the unit
        (the next birth says reset "memory")."""
        self.client = None
        gc.collect()
        while self._press_count:
            try:
                self._record(self._press_first)
            except MemoryError:
                break
        try:
            self.outbox.close()
            self.log("memory: allocations failing for over %d s: reset" % (self.heap.reset_ms // 1000))
        except (OSError, MemoryError):
            pass
        raise Restart("memory")

    def task_failed(self, loop, context):
        """asyncio's exception handler: a task ended by an exception it did not catch."""
        e = context.get("exception")
        print("unit: unhandled", e, context.get("message"))
        if isinstance(e, MemoryError):
            self.out_of_memory("a task")
        elif e is not None:
            import sys

            sys.print_exception(e)

    def on_downlink(self, topic, payload):
        try:
            msg = wire.check_json(payload, wire.DOWN_TYPES)  # our own downlink topic only
        except ValueError as e:
            self.log("downlink refused: %s" % e)
            return
        if msg["_type"] == "ack":  # the gateway stored the press: it leaves the outbox
            self.outbox.confirm(msg["boot"], msg["seq"])
            if msg["boot"] == self.boot:
                self.feedback.acked(msg["seq"])
        else:  # settings, an assignment, a release: now and then, so loaded for each
            borrow("orders").obey(self, msg)

    # GNSS
    async def gnss_task(self):
        stream = self.board.gnss_stream()
        if stream is None:
            self.log("gnss: no receiver")
            return
        buf = bytearray(128)
        view = memoryview(buf)
        while True:
            n = await stream.readinto(buf)
            if not n:
                await asyncio.sleep_ms(100)
                continue
            try:
                self.gnss.feed(view[:n])
            except MemoryError:  # the rest of this chunk is lost, a fix or two at most
                self.out_of_memory("gnss")

    def on_fix(self, fix):
        if not self.fixes.accept(fix):
            return
        self.clock.set(fix.time, fix.ms)
        f = self.fixes
        if self.policy.update(f.t, f.lat, f.lon, f.speed, f.track):
            self.report()

    def report(self):
        """The last trusted fix into the outbox, to be sent as soon as the link allows."""
        f = self.fixes
        rec = wire.encode_pos(
            self.boot, self.next_seq(), int(f.t), f.lat, f.lon, f.speed, f.track, f.sats, f.hdop, 0
        )
        self.outbox.add_position(rec)
        self.last_report_ms = time.ticks_ms()
        self.wake = True

    async def housekeeping_task(self):
        """At a quiet point each second: collect garbage, note the heap in use, take the
        emergency reserve back if it was given."""
        n = 0
        every = self.cfg["heap_log_s"]
        while True:
            await asyncio.sleep_ms(1000)
            self.beat("housekeeping")
            try:
                used = self.heap.sample(True)
                self.heap.arm()
                n += 1
                if every and n % every == 0:  # the soak tests' samples
                    self.log("heap: %d" % used)
                if n % 600 == 0:
                    self.log_stats()
                elif n == 5:  # read by the technician's self-test (provisioning/selftest.py)
                    self.log("gnss: %d sentences in 5 s" % self.gnss.sentences)
                    self.log("supply: %s V" % self.board.supply_volts())
            except MemoryError:
                self.out_of_memory("housekeeping")

    def log_stats(self):
        self.log(borrow("telemetry").stats(self))

    async def keys_task(self):
        while True:
            self.beat("keys")
            try:
                self.keypad.poll()
                if self._press_count and time.ticks_diff(time.ticks_ms(), self._press_retry) >= 0:
                    self._take_presses()
                self.feedback.check()
            except MemoryError:  # the LEDs' or the buzzer's output: shown at the next change
                self.out_of_memory("keys")
            await asyncio.sleep_ms(10)
            while self.stall_keys:  # fault injection (virtual board): a task that hangs
                await asyncio.sleep_ms(1000)

    # the watchdog: the board feeds it only while every critical task still beats
    def beat(self, task):
        self.beats[task] = time.ticks_ms()

    def healthy(self):
        now = time.ticks_ms()
        for task in CRITICAL_TASKS:
            last = self.beats.get(task)
            if last is None or time.ticks_diff(now, last) > CRITICAL_TASKS[task]:
                if self.hung != task:
                    self.hung = task
                    self.log("watchdog: task %s is hung; no more feeding" % task)
                return False
        return True

    # uplink, in the order the crew and the dispatcher need it: the newest press (never
    # behind more than one round trip), the other waiting presses oldest first, the
    # current position, then the position backlog oldest first, several per message.
    def _next_status(self):
        """The press to send now: one never sent (the newest first, then the oldest), or
        one the broker took but the gateway has not confirmed for `confirm_after_s` (a
        broker crash can lose what it acknowledged but had not saved). A press leaves
        the outbox only when the gateway confirms it; a repeat costs nothing, as the
        gateway keeps each (boot, seq) once. The outbox holds a few presses in RAM and
        reads the others back from flash as these are confirmed."""
        ob = self.outbox
        if ob.on_flash and len(ob.statuses) < ob.status_ram:
            ob.refill()
        waiting, sent = ob.statuses, ob.sent
        if not waiting:
            return None
        newest = waiting[-1]
        if sent[-1] is None and newest[1] == self.newest_press and newest[0] == self.boot:
            return newest
        for i in range(len(waiting)):
            if sent[i] is None:
                return waiting[i]
        limit = self.cfg["confirm_after_s"] * 1000
        now = time.ticks_ms()
        for i in range(len(waiting)):
            if time.ticks_diff(now, sent[i]) >= limit:
                self.log("press seq %d not confirmed by the gateway: sent again" % waiting[i][1])
                return waiting[i]
        return None

    async def _publish_positions(self, client, records):
        """One message of position records, their send time set, in one buffer."""
        now = self.clock.now()
        payload = bytearray(len(records) * 29)
        for i, r in enumerate(records):
            sending(r, now, payload, i * 29)
        await client.publish(self.topics["pos"], payload, qos=1)
        for r in records:
            boot, seq = wire.ident(r)
            self.outbox.acknowledge(boot, (seq,))
        self.reports += len(records)

    async def _send_one_round(self, client):
        """Send the most urgent waiting message; False when nothing waits. While the heap
        is short (the reserve given back), backlog batches are small."""
        rec = self._next_status()
        if rec is not None:
            await client.publish(self.topics["status"], status_payload(rec, self.clock.now()), qos=1)
            self.outbox.mark_sent(rec, time.ticks_ms())
            return True
        fresh = self.outbox.newest_fresh()
        if fresh is not None:
            await self._publish_positions(client, (fresh,))
            return True
        batch = self.outbox.backlog(self.cfg["report_batch"] if self.heap.reserve is not None else 2)
        if batch:
            await self._publish_positions(client, batch)
            return True
        return False

    async def _round(self, client):
        """One turn of the sender: True when it sent a message and has more to send.
        Stopped or without new fixes, the last trusted fix goes out now and then."""
        now = time.ticks_ms()
        if self.fixes.valid and time.ticks_diff(now, self.last_report_ms) >= self.policy.heartbeat * 1000:
            self.report()
        if self.tele_at is None or time.ticks_diff(now, self.tele_at) >= self.cfg["telemetry_s"] * 1000:
            self.tele_at = now  # at the start of each session, then every telemetry_s
            await client.publish(self.topics["tele"], self.telemetry(), qos=0)
        return await self._send_one_round(client)

    async def sender(self, client):
        self.outbox.rewind()  # whatever was in flight when the last link died goes again,
        self.tele_at = None  # presses the gateway has not confirmed too; telemetry at once
        while True:
            self.beat("link")
            try:
                if await self._round(client):
                    continue
            except MemoryError:  # a link it broke is closed: the next publish ends the session
                self.out_of_memory("sender")
                self.outbox.rewind()
                await asyncio.sleep_ms(_RETRY_MS)
                continue
            self.outbox.flush()
            self.wake = False
            await self._pause("wake", 200)

    def telemetry(self):
        """The `tele` message: link, modem, memory and flash, for a technician
        (docs/protocol.md; telemetry.py, loaded for each)."""
        return borrow("telemetry").message(self)

    # link
    async def _session(self):
        tasks = await borrow("session").open_session(self)  # connect, birth, subscribe
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def link_task(self):
        """Keep the link up: reconnect with jittered exponential backoff, from the start
        again after a session that came up, and at once when the crew presses a key. A
        session that ran out of heap is ended like a failed link. Given a cluster's
        nodes, each try goes to the next node (mqtt_connect.py); the backoff grows with
        each failed try, whichever node it was."""
        delay = self.cfg["backoff_min_ms"]
        while not self.stopping:
            self.beat("link")
            self.link_up = False
            try:
                await self._session()
            except LINK_ERRORS as e:
                self.log("link down: %r" % (e,))
            except MemoryError:
                self.out_of_memory("link")
            if self.client:
                self.client.close()
            if self.stopping:
                break
            if self.link_up:
                delay = self.cfg["backoff_min_ms"]
            self.retry_now = False
            await self._pause("retry_now", delay // 2 + random.getrandbits(16) % (delay // 2 + 1))
            delay = min(delay * 2, self.cfg["backoff_max_ms"])
            gc.collect()
        while True:  # shutting down: the goodbye ends the firmware (SystemExit)
            await asyncio.sleep(1)

    async def _pause(self, flag, ms):
        """Wait ms, or less once the attribute `flag` is set (polled every 10 ms: waiting
        allocates nothing, unlike a wait_for on an Event)."""
        end = time.ticks_add(time.ticks_ms(), ms)
        while not getattr(self, flag) and time.ticks_diff(end, time.ticks_ms()) > 0:
            await asyncio.sleep_ms(10)

    def shutdown(self):
        """Ignition off: the unit says goodbye (a retained `bye`, so the gateway knows it
        went on purpose, not by its last will), logs its figures, and the firmware ends
        (main.py takes the SystemExit as a clean stop)."""
        self.stopping = True  # the link task reconnects no more
        asyncio.create_task(self._bye())

    async def _bye(self):
        client = self.client
        if client is not None:
            now = self.clock.now()
            try:
                payload = wire.encode_json("bye", self.boot, self.seq_apart(), t=now, sent=now)
                await client.publish(self.topics["conn"], payload, qos=1, retain=True, timeout_ms=2000)
                await client.disconnect()
            except LINK_ERRORS:
                pass
        try:
            self.log_stats()  # telemetry.py, loaded for it: it takes heap
        except MemoryError:  # the figures are lost, not the goodbye
            pass
        self.log("shut down")
        raise SystemExit(0)

    def start(self):
        """The unit's tasks; main.py then runs the supervisor, link_task."""
        self.log("unit %s boot %d" % (self.unit_id, self.boot))
        asyncio.create_task(self.gnss_task())
        asyncio.create_task(self.keys_task())
        asyncio.create_task(self.housekeeping_task())
        asyncio.create_task(self.board.run(self))
        if self.cell is not None:
            asyncio.create_task(self.cell.run())
