# An asyncio MQTT 3.1.1 client for the unit: QoS 0 and 1, persistent session, last will,
# keepalive. It runs over any asyncio stream pair (asyncio.open_connection here and on
# the ESP32). Link faults are OSError; the unit's supervisor reconnects.
import asyncio
import struct
import time

CONNECT_TIMEOUT_MS = 10000
PUBACK_TIMEOUT_MS = 10000

_CONNACK_ERRORS = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class MQTTError(OSError):
    pass


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
    def __init__(
        self, client_id, host, port=1883, user=None, password=None, keepalive=60, clean=False, will=None
    ):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.clean = clean
        self.will = will  # (topic, payload, qos, retain) or None
        self.on_message = None  # callback(topic, payload)
        self._reader = None
        self._writer = None
        self._pid = 0
        self._acked = {}  # pid -> True once its PUBACK/SUBACK arrived
        self._ack_event = asyncio.Event()
        self._last_rx = 0
        self.session_present = False

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def _send(self, header, body):
        w = self._writer
        if w is None:
            raise MQTTError("not connected")
        w.write(bytes([header]) + _varlen(len(body)) + body)
        await w.drain()

    def _connect_packet(self):
        flags = 0 if not self.clean else 0x02
        payload = _str(self.client_id)
        if self.will:
            topic, msg, qos, retain = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(msg)
        if self.user:
            flags |= 0x80
            payload += _str(self.user)
            if self.password:
                flags |= 0x40
                payload += _str(self.password)
        return b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack(">H", self.keepalive) + payload

    async def connect(self):
        """Open the link and complete CONNECT/CONNACK; returns Session Present."""
        self.close()
        self._reader, self._writer = await asyncio.wait_for_ms(
            asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT_MS
        )
        await self._send(0x10, self._connect_packet())
        head = await asyncio.wait_for_ms(self._reader.readexactly(4), CONNECT_TIMEOUT_MS)
        if head[0] != 0x20 or head[1] != 2:
            raise MQTTError("no CONNACK")
        if head[3]:
            raise MQTTError("broker refused: " + _CONNACK_ERRORS.get(head[3], str(head[3])))
        self.session_present = bool(head[2] & 1)
        self._last_rx = time.ticks_ms()
        return self.session_present

    def close(self):
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError:
                pass
        self._reader = self._writer = None
        self._acked = {}

    async def disconnect(self):
        try:
            await self._send(0xE0, b"")
        finally:
            self.close()

    async def _wait_ack(self, pid, timeout_ms):
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while pid not in self._acked:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0 or self._writer is None:
                self._acked.pop(pid, None)
                raise MQTTError("no acknowledgement for packet %d" % pid)
            self._ack_event.clear()
            try:
                await asyncio.wait_for_ms(self._ack_event.wait(), left)
            except asyncio.TimeoutError:
                pass
        del self._acked[pid]

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=PUBACK_TIMEOUT_MS):
        """Send a message; with QoS 1 return only after the broker's PUBACK."""
        header = 0x30 | (qos << 1) | (1 if retain else 0)
        body = _str(topic)
        pid = 0
        if qos:
            pid = self._next_pid()
            body += struct.pack(">H", pid)
        await self._send(header, body + payload)
        if qos:
            await self._wait_ack(pid, timeout_ms)

    async def subscribe(self, topic, qos=1):
        pid = self._next_pid()
        await self._send(0x82, struct.pack(">H", pid) + _str(topic) + bytes([qos]))
        await self._wait_ack(pid, PUBACK_TIMEOUT_MS)

    async def _read_packet(self):
        r = self._reader
        header = (await r.readexactly(1))[0]
        n, shift = 0, 0
        while True:
            b = (await r.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        body = await r.readexactly(n) if n else b""
        self._last_rx = time.ticks_ms()
        return header, body

    async def _handle_publish(self, header, body):
        tlen = struct.unpack_from(">H", body, 0)[0]
        topic = body[2 : 2 + tlen].decode()
        pos = 2 + tlen
        qos = (header >> 1) & 3
        if qos:
            pid = body[pos : pos + 2]
            pos += 2
        if self.on_message:
            self.on_message(topic, body[pos:])
        if qos:
            await self._send(0x40, pid)

    async def run(self):
        """Read packets until the link fails; raises OSError then."""
        while True:
            header, body = await self._read_packet()
            kind = header & 0xF0
            if kind == 0x30:
                await self._handle_publish(header, body)
            elif kind in (0x40, 0x90):  # PUBACK, SUBACK
                self._acked[struct.unpack_from(">H", body, 0)[0]] = True
                self._ack_event.set()

    async def keep_alive(self):
        """Ping while idle; a link silent for 1.5 keepalives is dead (OSError)."""
        period = self.keepalive * 1000 // 2
        while True:
            await asyncio.sleep_ms(period)
            if time.ticks_diff(time.ticks_ms(), self._last_rx) > period * 3:
                raise MQTTError("link silent for %d s" % (period * 3 // 1000))
            await self._send(0xC0, b"")
