"""The unit's data link as a TCP proxy between a unit and the broker: it passes bytes,
can go silent (an LTE dead zone: nothing gets through and nobody is told, so TCP does
not notice), can cut every connection, and records the MQTT packets that cross it."""

import socket
import threading
import time
from dataclasses import dataclass

from provisioning.processes import free_port

MQTT_TYPES = {
    1: "CONNECT",
    2: "CONNACK",
    3: "PUBLISH",
    4: "PUBACK",
    8: "SUBSCRIBE",
    9: "SUBACK",
    12: "PINGREQ",
    13: "PINGRESP",
    14: "DISCONNECT",
}


@dataclass(frozen=True)
class Packet:
    t: float
    direction: str  # "up" (unit to broker) or "down"
    kind: str
    size: int  # bytes on the wire, fixed header included
    topic: str | None
    payload: int = 0  # bytes of a PUBLISH's payload


class MQTTFramer:
    """Splits a byte stream into MQTT packets."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        while True:
            packet = self._next()
            if packet is None:
                return
            yield packet

    def _next(self):
        n, shift, i = 0, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            n |= (b & 0x7F) << shift
            shift, i = shift + 7, i + 1
            if not b & 0x80:
                break
        if len(self.buf) < i + n:
            return None
        packet = bytes(self.buf[: i + n])
        del self.buf[: i + n]
        return packet, i


def describe(packet, header_len):
    """(kind, topic, payload length) of one MQTT packet."""
    kind = MQTT_TYPES.get(packet[0] >> 4, str(packet[0] >> 4))
    if kind != "PUBLISH":
        return kind, None, 0
    tlen = int.from_bytes(packet[header_len : header_len + 2], "big")
    topic = packet[header_len + 2 : header_len + 2 + tlen].decode(errors="replace")
    start = header_len + 2 + tlen + (2 if packet[0] & 0x06 else 0)  # packet id with QoS > 0
    return kind, topic, len(packet) - start


class Link:
    def __init__(self, target_port, target_host="127.0.0.1", port=None):
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.packets = []
        self.silent = threading.Event()  # set: a dead zone, nothing gets through
        self._conns = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self):
        self._srv = socket.create_server(("127.0.0.1", self.port))
        self._srv.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True, name="link-accept").start()
        return self

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            # The time-out is for the connect only. Left on the socket it would cut the
            # link after 5 s without a byte from the broker (a unit that is stopped and
            # sends a heartbeat every few seconds of a fast replay): a drop no fault caused.
            upstream.settimeout(None)
            with self._lock:
                self._conns.append((client, upstream))
            for src, dst, direction in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pump, args=(src, dst, direction), daemon=True).start()

    def _pump(self, src, dst, direction):
        framer = MQTTFramer()
        try:
            while True:
                self._hold()
                data = src.recv(65536)
                self._hold()  # what was in flight when the dead zone began waits too
                if not data:
                    break
                for packet, header_len in framer.feed(data):
                    kind, topic, payload = describe(packet, header_len)
                    self.packets.append(Packet(time.time(), direction, kind, len(packet), topic, payload))
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _hold(self):
        while self.silent.is_set() and not self._stop.is_set():
            time.sleep(0.02)  # bytes wait in the TCP buffers: nothing arrives, no close

    def cut(self):
        """Close every connection now (the modem dropped the data session)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for pair in conns:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def stop(self):
        self._stop.set()
        self.cut()
        self._srv.close()
