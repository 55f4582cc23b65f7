# The unit: reads GNSS and the status keys, reports over MQTT, shows the crew whether
# each press was delivered. One supervisor keeps the link up; every link fault is an
# OSError (or EOFError from a closed stream) and leads to a reconnect with backoff.
import asyncio
import gc
import os
import random
import time

import wire
from clock import Clock
from feedback import Feedback
from fixfilter import FixFilter
from flashstate import next_boot
from keys import Keypad
from mqtt import MQTTClient, tls_context
from nmea import NMEADecoder
from outbox import Outbox, sending, status_payload
from reporter import ReportPolicy

FIRMWARE_VERSION = "0.1.0"
LINK_ERRORS = (OSError, EOFError, asyncio.TimeoutError)
# The tasks the watchdog guards, and how long each may go without a sign of life (ms):
# the link task waits at most a publish time-out or a backoff between its beats.
CRITICAL_TASKS = {"keys": 5000, "housekeeping": 5000, "link": 60000}


class Unit:
    def __init__(self, board, cfg, log=print):
        self.board = board
        self.cfg = cfg
        self.log = log
        self.unit_id = cfg["unit_id"]
        self.boot = next_boot()
        self.seq = 0
        self.clock = Clock(board.rtc_time)
        self.gnss = NMEADecoder()
        self.gnss.on_fix = self.on_fix
        self.fixes = FixFilter(cfg)  # the last trusted fix
        self.policy = ReportPolicy(cfg)
        self.last_report_ms = time.ticks_ms()
        self.tls = None  # the TLS context, made first, while the heap is still in one piece
        if cfg["broker_tls"] and cfg["broker_ca"]:
            try:
                self.tls = tls_context(cfg["broker_ca"])
            except (OSError, ValueError) as e:  # no link then, and the link says why
                log("tls: %s" % (e,))
        self.storage = board.storage()
        self.outbox = Outbox(
            self.storage + "/ob", cfg["outbox_max_bytes"], cfg["outbox_status_cap"], log
        ).open()
        self.cell = board.cellular(cfg, log)  # the LTE link; None: the host's network
        self.started_ms = time.ticks_ms()
        self.wake = asyncio.Event()
        self.retry_now = asyncio.Event()
        self.link_up = False
        self.stopping = False
        self.feedback = Feedback(board, cfg["undelivered_alarm_s"])
        self.keypad = Keypad(
            board.key,
            cfg["status_keys"],
            cfg["long_press_keys"],
            self.pressed,
            cfg["debounce_ms"],
            cfg["long_press_ms"],
        )
        self.client = None
        self.reports = 0
        self.heap_peak = 0
        self.heap_code = 0
        self.assignment = None  # the incident id the dispatcher assigned, if any
        self.newest_press = None  # seq of the newest press: it goes out before older ones
        now = time.ticks_ms()
        self.beats = {task: now for task in CRITICAL_TASKS}  # the last sign of life of each
        self.hung = None
        self.stall_keys = False
        self.sent_at = {}  # (boot, seq) of a press the broker took -> ticks: awaiting the gateway

    def next_seq(self):
        seq = self.seq
        self.seq += 1
        return seq

    def topic(self, kind):
        return wire.topic(self.unit_id, kind)

    # crew
    def pressed(self, key, long_press):
        seq = self.next_seq()
        t, ms = self.clock.split()
        f = self.fixes
        self.outbox.add_status(
            self.boot, seq, key, t, ms, f.lat if f.valid else None, f.lon if f.valid else None
        )
        self.newest_press = seq
        self.retry_now.set()  # no waiting out a long backoff with a press to deliver
        self.policy.force("status")
        self.feedback.pressed(key, seq)
        self.log("key %d pressed%s: seq %d" % (key, " (long)" if long_press else "", seq))
        self.wake.set()

    def on_downlink(self, topic, payload):
        try:
            _, _, msg = wire.decode(topic, payload)
        except ValueError as e:
            self.log("downlink refused: %s" % e)
            return
        if msg["_type"] == "ack":  # the gateway stored the press: it leaves the outbox
            self.outbox.acknowledge(msg["boot"], [msg["seq"]])
            self.sent_at.pop((msg["boot"], msg["seq"]), None)
            if msg["boot"] == self.boot:
                self.feedback.acked(msg["seq"])
        elif msg["_type"] == "config":
            self.apply_settings(msg["values"], msg["version"])
        elif msg["_type"] == "assign":
            self.assignment = msg["id"]
            self.feedback.alert()
            self.log(
                "assigned: incident %d (%s) at %s,%s; press 3 when en route"
                % (msg["id"], msg.get("kind"), msg.get("lat"), msg.get("lon"))
            )
        elif msg["_type"] == "release" and msg["id"] == self.assignment:
            self.assignment = None
            self.log("released from incident %d" % msg["id"])

    def apply_settings(self, values, version):
        """Settings pushed by the gateway: checked, kept on flash, in force at once."""
        import config

        if version <= self.cfg["_version"]:
            return  # a repeat of what is in force
        try:
            config.apply_pushed(self.cfg, values, version)
        except (ValueError, OSError) as e:
            self.log("settings %d refused: %s" % (version, e))
            return
        cfg = self.cfg
        self.policy.configure(cfg)
        self.fixes.configure(cfg)
        self.keypad.debounce_ms, self.keypad.long_press_ms = cfg["debounce_ms"], cfg["long_press_ms"]
        self.feedback.alarm_ms = cfg["undelivered_alarm_s"] * 1000
        self.log("settings %d in force: %s" % (version, ", ".join(sorted(values))))

    # GNSS
    async def gnss_task(self):
        stream = self.board.gnss_stream()
        if stream is None:
            self.log("gnss: no receiver")
            return
        buf = bytearray(128)
        while True:
            n = await stream.readinto(buf)
            if not n:
                await asyncio.sleep_ms(100)
                continue
            self.gnss.feed(memoryview(buf)[:n])

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
        self.wake.set()

    async def housekeeping_task(self):
        """At a quiet point each second: collect garbage, note the live heap's peak."""
        n = 0
        while True:
            await asyncio.sleep_ms(1000)
            self.beat("housekeeping")
            gc.collect()
            self.heap_peak = max(self.heap_peak, gc.mem_alloc())
            n += 1
            if n % 600 == 0:
                self.log_stats()
            elif n == 5:  # read by the technician's self-test (provisioning/selftest.py)
                self.log("gnss: %d sentences in 5 s" % self.gnss.sentences)
                self.log("supply: %s V" % self.board.supply_volts())

    def log_stats(self):
        self.log(
            "stats: heap peak %d code %d free %d; reports %d; nmea ok %d errors %s; rejected %s"
            % (
                self.heap_peak,
                self.heap_code,
                gc.mem_free(),
                self.reports,
                self.gnss.sentences,
                self.gnss.errors,
                self.fixes.rejected,
            )
        )

    async def keys_task(self):
        while True:
            self.beat("keys")
            self.keypad.poll()
            self.feedback.check()
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
        gateway keeps each (boot, seq) once."""
        waiting = self.outbox.statuses
        if not waiting:
            return None
        unsent = [s for s in waiting if (s[0], s[1]) not in self.sent_at]
        if unsent:
            newest = unsent[-1]
            return newest if newest[1] == self.newest_press and newest[0] == self.boot else unsent[0]
        limit = self.cfg["confirm_after_s"] * 1000
        now = time.ticks_ms()
        for s in waiting:
            if time.ticks_diff(now, self.sent_at[(s[0], s[1])]) >= limit:
                self.log("press seq %d not confirmed by the gateway: sent again" % s[1])
                return s
        return None

    async def _publish_status(self, client, rec):
        await client.publish(self.topic("status"), status_payload(rec, self.clock.now()), qos=1)
        self.sent_at[(rec[0], rec[1])] = time.ticks_ms()

    async def _publish_positions(self, client, records):
        now = self.clock.now()
        payload = b"".join(sending(r, now) for r in records)
        await client.publish(self.topic("pos"), payload, qos=1)
        for r in records:
            boot, seq = wire.ident(r)
            self.outbox.acknowledge(boot, [seq])
        self.reports += len(records)

    async def _send_one_round(self, client):
        """Send the most urgent waiting message; False when nothing waits."""
        rec = self._next_status()
        if rec is not None:
            await self._publish_status(client, rec)
            return True
        fresh = self.outbox.newest_fresh()
        if fresh is not None:
            await self._publish_positions(client, [fresh])
            return True
        batch = self.outbox.backlog(self.cfg["report_batch"])
        if batch:
            await self._publish_positions(client, batch)
            return True
        return False

    def _heartbeat_due(self):
        """Stopped or without new fixes, the last trusted fix goes out now and then."""
        interval = self.policy.heartbeat * 1000
        return self.fixes.valid and time.ticks_diff(time.ticks_ms(), self.last_report_ms) >= interval

    async def sender(self, client):
        self.outbox.rewind()  # whatever was in flight when the last link died goes again
        self.sent_at = {}  # and so do presses the gateway has not confirmed
        self.tele_at = None  # ticks of the last telemetry: none yet in this session
        while True:
            self.beat("link")
            if self._heartbeat_due():
                self.report()
            now = time.ticks_ms()
            if self.tele_at is None or time.ticks_diff(now, self.tele_at) >= self.cfg["telemetry_s"] * 1000:
                self.tele_at = now  # at the start of each session, then every telemetry_s
                await client.publish(self.topic("tele"), self.telemetry(), qos=0)
            if await self._send_one_round(client):
                continue
            self.outbox.flush()
            self.wake.clear()
            try:
                await asyncio.wait_for_ms(self.wake.wait(), 200)
            except asyncio.TimeoutError:
                pass

    def telemetry(self):
        """Link, modem, memory and flash, for a technician (docs/protocol.md, tele)."""
        now = self.clock.now()
        fields = dict(
            t=now,
            sent=now,
            up=time.ticks_diff(time.ticks_ms(), self.started_ms) // 1000,
            heap_free=gc.mem_free(),
            heap_peak=self.heap_peak,
            waiting=self.outbox.waiting,
            unjournaled=len(self.outbox.unjournaled),
            write_errors=self.outbox.write_errors,
        )
        try:
            st = os.statvfs(self.storage)
            fields["flash_free"] = st[0] * st[3]
        except OSError:
            pass
        volts = self.board.supply_volts()
        if volts is not None:
            fields["supply_v"] = volts
        if self.cell is not None:
            fields.update(self.cell.info())
        return wire.encode_json("tele", self.boot, self.next_seq(), **fields)

    # link
    def _client(self, birth_seq):
        will = (self.topic("conn"), wire.encode_json("will", self.boot, birth_seq), 1, True)
        if self.client is not None:  # one client for all sessions: what it has in flight goes again
            self.client.will = will
            return self.client
        cfg = self.cfg
        user = cfg["mqtt_user"] or (self.unit_id if cfg["mqtt_password"] else None)
        return MQTTClient(
            self.unit_id,
            cfg["broker_host"],
            cfg["broker_port"],
            user,
            cfg["mqtt_password"] or None,
            cfg["keepalive_s"],
            clean=False,
            will=will,
            ssl=(self.tls or cfg["broker_ca"]) if cfg["broker_tls"] else None,  # no CA: no link
            server_hostname=cfg["broker_hostname"],
            transport=self.cell if self.cell is not None and self.cell.tcp else None,
        )

    async def _session(self):
        if self.cell is not None and not self.cell.up():
            raise OSError("no mobile network yet: modem %s, %s" % (self.cell.modem.state, self.cell.error))
        birth_seq = self.next_seq()
        client = self._client(birth_seq)
        client.on_message = self.on_downlink
        self.client = client
        await client.connect()
        now = self.clock.now()
        birth = wire.encode_json(
            "birth",
            self.boot,
            birth_seq,
            t=now,
            sent=now,
            fw=FIRMWARE_VERSION,
            board=self.board.name + "/" + self.board.revision,
            reset=self.board.reset_cause(),
            cfg=self.cfg["_version"],
            dropped=self.outbox.dropped,
            torn=self.outbox.torn,
        )
        reader = asyncio.create_task(client.run())
        await client.publish(self.topic("conn"), birth, qos=1, retain=True)
        await client.subscribe(self.topic("down"), 1)
        self.link_up = True
        self.log(
            "link up: broker %s:%d, session present %s"
            % (self.cfg["broker_host"], self.cfg["broker_port"], client.session_present)
        )
        tasks = [reader, asyncio.create_task(client.keep_alive()), asyncio.create_task(self.sender(client))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def link_task(self):
        """Keep the link up: reconnect with jittered exponential backoff, from the start
        again after a session that came up, and at once when the crew presses a key."""
        delay = self.cfg["backoff_min_ms"]
        while not self.stopping:
            self.beat("link")
            self.link_up = False
            try:
                await self._session()
            except LINK_ERRORS as e:
                self.log("link down: %r" % (e,))
            if self.client:
                self.client.close()
            if self.stopping:
                break
            if self.link_up:
                delay = self.cfg["backoff_min_ms"]
            self.retry_now.clear()
            try:
                await asyncio.wait_for_ms(
                    self.retry_now.wait(), delay // 2 + random.getrandbits(16) % (delay // 2 + 1)
                )
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.cfg["backoff_max_ms"])
            gc.collect()

    def shutdown(self):
        self.stopping = True
        asyncio.create_task(self._bye())

    async def _bye(self):
        client = self.client
        if client is not None:
            now = self.clock.now()
            try:
                payload = wire.encode_json("bye", self.boot, self.next_seq(), t=now, sent=now)
                await client.publish(self.topic("conn"), payload, qos=1, retain=True, timeout_ms=2000)
                await client.disconnect()
            except LINK_ERRORS:
                pass
        self.log_stats()
        self.log("shut down")
        raise SystemExit(0)

    async def run(self):
        self.log("unit %s boot %d" % (self.unit_id, self.boot))
        asyncio.create_task(self.gnss_task())
        asyncio.create_task(self.keys_task())
        asyncio.create_task(self.housekeeping_task())
        asyncio.create_task(self.board.run(self))
        if self.cell is not None:
            asyncio.create_task(self.cell.run())
        await self.link_task()
        while True:
            await asyncio.sleep(1)
