# Opening an MQTT session for the client of mqtt.py: the link (TCP, the modem's own TCP
# stack, or TLS), CONNECT and CONNACK, then the messages the last session left
# unacknowledged. MQTTClient.connect() loads this module for each connect and gives it
# back afterwards: a unit opens a session now and then, and this code should not hold
# its heap in between (docs/firmware-memory.md).
import asyncio
import struct

from mqtt import MQTTError, _str

# CONNACK return codes 1..5 (MQTT 3.1.1 §3.2.2.3)
_REFUSED = (
    "unacceptable protocol version",
    "client id rejected",
    "server unavailable",
    "bad user name or password",
    "not authorised",
)


async def connect(c):
    """MQTTClient.connect() of the client `c`: Session Present, or MQTTError naming the
    broker and the cause. Each connect goes to the next of the client's brokers (a
    cluster's nodes), so a failed connect or a lost link moves on to another node;
    the caller's backoff is the same between any two tries."""
    c.close()
    nodes = c.brokers
    if nodes:
        nodes.append(nodes.pop(0))  # round the list: the first connect takes the first node
        c.host, c.port = nodes[-1]
    try:
        await asyncio.wait_for_ms(_open(c), c.connect_timeout_ms)
        return c.session_present
    except asyncio.TimeoutError:
        why = "no CONNACK within %d ms" % c.connect_timeout_ms
    except OSError as e:
        why = str(e)
    except ValueError as e:  # MicroPython's ssl: the broker's certificate was refused
        why = "TLS: " + str(e).strip()
    c.close()
    raise MQTTError("connect to %s:%d failed: %s" % (c.host, c.port, why))


def _connect_packet(c):
    flags = 0 if not c.clean else 0x02
    payload = _str(c.client_id)
    if c.will:
        topic, msg, qos, retain = c.will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(msg)
    if c.user:
        flags |= 0x80
        payload += _str(c.user)
        if c.password:
            flags |= 0x40
            payload += _str(c.password)
    return b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack(">H", c.keepalive) + payload


async def _open(c):
    ssl = c.ssl
    if c.transport is not None:
        if ssl is not None:
            raise MQTTError("TLS is not available over the modem's own TCP stack (data_path modem_tcp)")
        c._reader, c._writer = await c.transport.open(c.host, c.port)
    elif ssl is None:
        c._reader, c._writer = await asyncio.open_connection(c.host, c.port)
    else:
        if ssl is True:  # asyncio's own context would not verify the broker
            raise ValueError("ssl=True: give the CA file or a verifying context")
        if isinstance(ssl, str):
            from mqtt_tls import context

            ssl = c.ssl = context(ssl)  # once, kept for the next sessions
        c._reader, c._writer = await asyncio.open_connection(
            c.host, c.port, ssl=ssl, server_hostname=c.server_hostname
        )
    await c._write(0x10, None, 0, _connect_packet(c))
    header, body, _ = await c._read_packet()
    if header != 0x20 or len(body) != 2:
        raise MQTTError("no CONNACK")
    if body[1]:
        why = _REFUSED[body[1] - 1] if body[1] <= len(_REFUSED) else "code"
        raise MQTTError("broker refused: %s (%d)" % (why, body[1]))
    sp = c.session_present = bool(body[0] & 1)
    # Session Present: the broker kept the session, the unacknowledged messages go
    # again with DUP and their packet ids (MQTT 3.1.1 §4.4). Without it the session
    # was lost (§3.2.2.2): they go again as new messages, with new packet ids.
    for entry in c._inflight:
        if not sp:
            entry[0] = c._next_pid()
        await c._write((0x3A if sp else 0x32) | entry[3], entry[1], entry[0], entry[2])
        c.resent += 1
