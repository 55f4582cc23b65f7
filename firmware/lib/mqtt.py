# An asyncio MQTT 3.1.1 client for the unit: QoS 0 and 1, a persistent session whose
# unacknowledged messages outlive a link, last will, keepalive pings, user name and
# password, TLS with the broker's certificate verified. It runs over asyncio streams
# (asyncio.open_connection, here and on the ESP32). One client serves every session:
# after a link fault, connect() again. Link faults are OSError (MQTTError); the unit's
# supervisor reconnects with backoff. Memory is bounded: at most max_inflight messages
# kept for resending, at most max_packet bytes of an incoming packet; what does not fit
# is dropped and counted (discards, oversize). The code is lean on purpose: on the unix
# port it is loaded into the unit's 96 KB heap. A PUBLISH is framed in one buffer kept
# for the client's life (`tx_bytes`), not built from pieces; a MemoryError while writing
# drops the link, as a half-written packet would corrupt the stream. Opening a session
# (mqtt_connect.py) is loaded for each connect and given back; TLS code (mqtt_tls.py) is
# loaded only for a broker with TLS.
import asyncio
import struct
import time

from micropython import const

from heap import borrow

_ACK_POLL_MS = const(20)  # the longest step while waiting for an acknowledgement


class MQTTError(OSError):
    pass


def _from_broker(header, body):
    """Whether a packet is one a broker may send in a session, well formed enough to
    read: PUBLISH (QoS 0 or 1, its topic inside it), PUBACK, SUBACK, UNSUBACK, PINGRESP
    with their fixed flags. Anything else is a broken stream (a modem's result codes,
    say), and the link is dropped rather than read on."""
    kind = header & 0xF0
    if kind == 0x30:
        n = len(body)
        return header & 0x06 != 0x06 and n >= 2 and 2 + (body[0] << 8 | body[1]) <= n
    if kind == 0x40 or kind == 0xB0:
        return header == kind and len(body) == 2
    if kind == 0x90:
        return header == 0x90 and len(body) >= 3
    return header == 0xD0 and not body


def _varlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return out


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack(">H", len(s)) + s


class MQTTClient:
    connect_timeout_ms = 10000  # TCP, TLS handshake, CONNACK and the resending after it
    ack_timeout_ms = 10000  # PUBACK or SUBACK; past it the link is taken for dead
    max_inflight = 8  # QoS 1 messages kept for resending; past it the oldest is dropped
    max_packet = 2048  # larger incoming packets are skipped, acknowledged and counted
    tx_bytes = 640  # the PUBLISH buffer; a larger packet is built apart (and counted)

    def __init__(
        self,
        client_id,
        host,
        port=1883,
        user=None,
        password=None,
        keepalive=60,
        clean=False,
        will=None,
        ssl=None,
        server_hostname=None,
        transport=None,
    ):
        self.client_id = client_id
        self.host = host  # the broker of this connect (the last one tried)
        self.port = port
        # None: one broker, host and port. A cluster's nodes: a list of (host, port), each
        # connect() to the next (mqtt_connect.py)
        self.brokers = None
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.clean = clean
        self.will = will  # (topic, payload, qos, retain) or None; read at each connect()
        self.ssl = ssl  # None, an SSL context, or the CA file's path ("": no CA, no link)
        self.server_hostname = server_hostname or None  # the name to verify: default host
        # None: the host's sockets (asyncio.open_connection). Else an object with
        # `async open(host, port) -> (reader, writer)` and `close()`: the modem's own TCP
        # stack (cellular.py). TLS is not available over it.
        self.transport = transport
        self.on_message = None  # callback(topic, payload)
        self.session_present = False
        self.discards = 0  # in-flight messages dropped from the resend list (it was full)
        self.oversize = 0  # incoming messages dropped for being over max_packet
        self.resent = 0  # in-flight messages sent again after a reconnect
        self.protocol_errors = 0  # links dropped for bytes that were no MQTT
        self.large = 0  # packets too large for the PUBLISH buffer, built apart
        self.probe = None  # called with each PUBLISH framed, before it is written (heap.py)
        self._tx = None  # the PUBLISH buffer, made at the first publish
        self._reader = self._writer = None
        self._busy = False  # a packet is being written
        self._pid = 0
        self._inflight = []  # [pid, topic, payload, retain] of QoS 1 messages not PUBACKed
        self._waiting = {}  # pid -> None, then the ack's code, for publish() and subscribe()
        self._last_rx = 0

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._next_pid() if self._find(self._pid) >= 0 else self._pid

    def _find(self, pid):
        for i, entry in enumerate(self._inflight):
            if entry[0] == pid:
                return i
        return -1

    # the wire
    async def _write(self, header, topic, pid, body):
        """One packet: a PUBLISH of `body` to `topic` (framed in the buffer, once the link
        is free, so no other packet can overwrite it), or with `topic` None a packet of
        that header and body."""
        w = self._writer
        while self._busy and w is self._writer:
            await asyncio.sleep_ms(5)
        if w is None or w is not self._writer:
            raise MQTTError("not connected")
        self._busy = True
        try:
            if topic is None:
                w.write(bytes([header]) + _varlen(len(body)) + body)
            else:
                packet = self._framed(header, topic, pid, body)
                if self.probe is not None:
                    self.probe()  # the message is built: the most a publish holds at once
                w.write(packet)
            await w.drain()
        except MemoryError:  # part of the packet may be out: the stream is no MQTT now
            self.close()
            raise
        finally:
            self._busy = False

    def _framed(self, header, topic, pid, payload):
        """A PUBLISH packet (a memoryview of the reused buffer when it fits)."""
        if isinstance(topic, str):
            topic = topic.encode()
        n = 2 + len(topic) + (2 if pid else 0) + len(payload)
        if n + 5 > self.tx_bytes:
            self.large += 1
            body = _str(topic) + (struct.pack(">H", pid) if pid else b"") + payload
            return bytes([header]) + _varlen(n) + body
        buf = self._tx
        if buf is None:
            buf = self._tx = bytearray(self.tx_bytes)
        buf[0] = header
        i = 1
        m = n
        while True:  # the remaining length, 7 bits a byte
            buf[i] = m & 0x7F | (0x80 if m > 0x7F else 0)
            i += 1
            m >>= 7
            if not m:
                break
        struct.pack_into(">H", buf, i, len(topic))
        i += 2
        buf[i : i + len(topic)] = topic
        i += len(topic)
        if pid:
            struct.pack_into(">H", buf, i, pid)
            i += 2
        buf[i : i + len(payload)] = payload
        return memoryview(buf)[: i + len(payload)]

    def shed(self):
        """Out of heap: let go of the PUBLISH buffer and of the copies kept for resending
        (the unit's outbox sends every position and press again from flash)."""
        self._tx = None
        self._inflight = []

    async def _read_packet(self):
        """(header, body, whole): a body over max_packet is cut there (whole False)."""
        r = self._reader
        try:
            header = (await r.readexactly(1))[0]
            n = shift = 0
            while True:
                b = (await r.readexactly(1))[0]
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            body = await r.readexactly(min(n, self.max_packet)) if n else b""
            skip = n - len(body)
            while skip > 0:
                skip -= len(await r.readexactly(min(skip, 256)))
        except EOFError:
            raise MQTTError("connection closed by the other end")
        except (OSError, AttributeError):  # AttributeError: no link at all
            if r is not None and r is self._reader:
                raise
            raise MQTTError("link closed")  # close() took the socket away
        self._last_rx = time.ticks_ms()
        return header, body, n == len(body)

    # the session
    async def connect(self):
        """Open the link and complete CONNECT/CONNACK, then send the messages the last
        session left unacknowledged, before anything new; all within connect_timeout_ms.
        Returns Session Present. MQTTError, naming the broker and the cause, on failure.
        The code that does it (mqtt_connect.py) is loaded for each connect and given back:
        a session is opened now and then, and its code should not hold the heap for the
        unit's whole life (docs/firmware-memory.md)."""
        return await borrow("mqtt_connect").connect(self)

    def close(self):
        """Drop the link (no DISCONNECT: the broker publishes the will). Unacknowledged
        messages stay for the next connect()."""
        w = self._writer
        self._reader = self._writer = None
        if w is not None and self.transport is not None:
            self.transport.close()  # the modem's UART stays open; its connection ends
        elif w is not None:
            try:
                w.close()
                w.s.close()  # MicroPython's Stream.close() leaves the socket open
            except (OSError, AttributeError):
                pass

    async def disconnect(self):
        try:
            await self._write(0xE0, None, 0, b"")
        finally:
            self.close()

    # acknowledgements
    async def _acked(self, header, topic, pid, body, timeout_ms):
        """Send a packet that the broker acknowledges and wait for that: a PUBLISH QoS 1
        of `body` to `topic`, or (topic None) a SUBSCRIBE whose `body` carries `pid`. The
        ack's code. Waited for before the packet goes, so an ack that comes
        back before this task runs again (a fast broker) is not missed. MQTTError when the
        link is lost first, or after timeout_ms, when the link is closed too: a broker
        that does not acknowledge is as good as dead."""
        waiting = self._waiting
        waiting[pid] = None
        try:
            await self._write(header, topic, pid if topic is not None else 0, body)
            w = self._writer
            deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
            step = 1  # ms: a quick ack is seen at once, a slow link polled every _ACK_POLL_MS
            while waiting[pid] is None:
                left = time.ticks_diff(deadline, time.ticks_ms())
                if w is None or w is not self._writer:
                    raise MQTTError("link lost before the acknowledgement of packet %d" % pid)
                if left <= 0:
                    self.close()
                    raise MQTTError("no acknowledgement of packet %d within %d ms" % (pid, timeout_ms))
                await asyncio.sleep_ms(min(step, left))  # polled: nothing allocated to wait
                step = min(step * 2, _ACK_POLL_MS)
            return waiting[pid]
        finally:
            del waiting[pid]

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=None):
        """Send a message. QoS 1: it is kept until its PUBACK (sent again by the next
        connect() if the link fails first), and publish() returns only after the PUBACK;
        with none within timeout_ms the link is closed and MQTTError raised."""
        retain = 1 if retain else 0
        if not qos:
            await self._write(0x30 | retain, topic, 0, payload)
            return
        if self._writer is None:
            raise MQTTError("not connected")
        pid = self._next_pid()
        if len(self._inflight) >= self.max_inflight:
            self._inflight.pop(0)
            self.discards += 1
        self._inflight.append([pid, topic, payload, retain])
        await self._acked(0x32 | retain, topic, pid, payload, timeout_ms or self.ack_timeout_ms)

    async def subscribe(self, topic, qos=1):
        pid = self._next_pid()
        body = struct.pack(">H", pid) + _str(topic) + bytes([qos])
        if await self._acked(0x82, None, pid, body, self.ack_timeout_ms) == 0x80:
            raise MQTTError("subscription to %s refused" % topic)

    # the reader
    async def run(self):
        """Read packets until the link fails; then close it and raise MQTTError (OSError).
        A redelivered message (DUP) is delivered and acknowledged again: the unit's
        downlink is idempotent."""
        reader = self._reader
        try:
            while True:
                header, body, whole = await self._read_packet()
                kind = header & 0xF0
                if not _from_broker(header, body):  # MQTT 3.1.1 §4.8: close the connection
                    self.protocol_errors += 1
                    raise MQTTError("protocol violation: packet 0x%02x from the broker" % header)
                if kind == 0x30:  # PUBLISH
                    pos = 2 + struct.unpack_from(">H", body, 0)[0]
                    pid = body[pos : pos + 2] if header & 0x06 else None
                    if not whole:
                        self.oversize += 1
                    elif self.on_message:
                        self.on_message(body[2:pos].decode(), body[pos + 2 if pid else pos :])
                    if pid:
                        await self._write(0x40, None, 0, pid)
                elif kind == 0x40 or kind == 0x90:  # PUBACK, SUBACK
                    pid = struct.unpack_from(">H", body, 0)[0]
                    i = self._find(pid)
                    if i >= 0:
                        del self._inflight[i]
                    if pid in self._waiting:
                        self._waiting[pid] = body[2] if kind == 0x90 else 0
        finally:
            if self._reader is reader:  # not a newer session's link
                self.close()

    async def keep_alive(self):
        """Ping when nothing came for half a keepalive; a link that brought nothing for 1.5
        keepalives is dead even when TCP has not noticed (a dead zone): it is closed and
        MQTTError raised. Checked every quarter keepalive: a dead link is found within
        1.75 keepalives."""
        if not self.keepalive:
            return
        half = self.keepalive * 500
        w = self._writer
        while w is self._writer:
            await asyncio.sleep_ms(half // 2)
            silent = time.ticks_diff(time.ticks_ms(), self._last_rx)
            if silent >= 3 * half:
                if w is self._writer:
                    self.close()
                raise MQTTError("link silent for %d ms (keepalive %d s)" % (silent, self.keepalive))
            if silent >= half and not self._busy and w is self._writer:
                w.write(b"\xc0\x00")  # PINGREQ; no drain: a link that cannot take it is dead
        raise MQTTError("link closed")
