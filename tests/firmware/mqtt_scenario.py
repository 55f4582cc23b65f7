# Runs the firmware's MQTT client (firmware/lib/mqtt.py) in the unix port:
#   micropython mqtt_scenario.py SCENARIO '{"port": 1883, "id": "t1", ...}'
# Each step prints one JSON line ({"step": name, ...}); where a scenario waits for the
# test (to stop the broker, silence the link, publish a downlink) it reads a line from
# stdin. tests/test_mqtt_client.py drives it.
import asyncio
import json
import sys
import time

from mqtt import MQTTClient, MQTTError

opts = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
stdin = asyncio.StreamReader(sys.stdin)


def emit(step, **fields):
    fields["step"] = step
    print(json.dumps(fields))


async def go():
    """Wait until the test says go on."""
    await stdin.readline()


def make():
    c = MQTTClient(
        opts.get("id", "mqtt-scenario"),
        opts.get("host", "127.0.0.1"),
        opts["port"],
        opts.get("user"),
        opts.get("password"),
        opts.get("keepalive", 10),
        will=(opts.get("up", "t/up"), b"gone", 1, False),
        ssl=opts.get("ca"),
        server_hostname=opts.get("hostname"),
    )
    c.connect_timeout_ms = opts.get("connect_ms", 3000)
    c.ack_timeout_ms = opts.get("ack_ms", 3000)
    c.on_message = lambda topic, payload: emit("message", topic=topic, payload=payload.decode())
    return c


def pids(c):
    return [entry[0] for entry in c._inflight]


class Session:
    """The client's reader and keepalive tasks, gathered at once, as the unit runs them."""

    def __init__(self, c):
        self.tasks = [asyncio.create_task(c.run()), asyncio.create_task(c.keep_alive())]
        self.watch = asyncio.create_task(self._watch())

    async def _watch(self):
        try:
            await asyncio.gather(*self.tasks)
        except OSError as e:
            return str(e)
        finally:
            for t in self.tasks:
                t.cancel()

    async def end(self):
        """The first link fault of run() or keep_alive(), as a string."""
        return await self.watch

    def cancel(self):
        self.watch.cancel()


async def until_up(c, resubscribe=True):
    """Connect with backoff, as the unit's supervisor does; one step per attempt."""
    delay = 100
    while True:
        t0 = time.ticks_ms()
        try:
            sp = await c.connect()
            break
        except OSError as e:
            emit("down", error=str(e), ms=time.ticks_diff(time.ticks_ms(), t0))
        await asyncio.sleep_ms(delay)
        delay = min(delay * 2, 800)
    session = Session(c)
    if resubscribe or not sp:
        await c.subscribe(opts.get("down", "t/down"), 1)
    emit("connected", sp=sp, resent=c.resent, inflight=pids(c), subscribed=resubscribe or not sp)
    return session


async def until_acked(c, ms=3000):
    deadline = time.ticks_add(time.ticks_ms(), ms)
    while c._inflight and time.ticks_diff(deadline, time.ticks_ms()) > 0:
        await asyncio.sleep_ms(20)
    emit("acked", inflight=pids(c))


async def connect():
    """One attempt: connect, subscribe, publish QoS 1 and 0, disconnect."""
    c = make()
    t0 = time.ticks_ms()
    try:
        sp = await c.connect()
    except OSError as e:
        emit("down", error=str(e), ms=time.ticks_diff(time.ticks_ms(), t0), connected=c._writer is not None)
        return
    s = Session(c)
    await c.subscribe(opts.get("down", "t/down"), 1)
    await c.publish(opts.get("up", "t/up"), b"one", qos=1)
    emit("published", sp=sp, inflight=pids(c))
    s.cancel()
    await c.disconnect()


async def pubsub():
    """QoS 1 both ways; a downlink queued while offline arrives at the next connect."""
    c = make()
    s = await until_up(c)
    await c.publish(opts["up"], b"one", qos=1)
    await c.publish(opts["up"], b"zero", qos=0)
    emit("published", inflight=pids(c))
    await go()  # the test published a downlink and saw it here
    s.cancel()
    await c.disconnect()
    emit("offline", connected=c._writer is not None)
    await go()  # the test queued a downlink for the persistent session
    s = await until_up(c)
    await go()  # the test saw the queued downlink
    s.cancel()
    await c.disconnect()


async def restart():
    """A message whose PUBACK never came is resent with DUP and its packet id after a
    broker restart; the broker kept the session (subscription included)."""
    c = make()
    s = await until_up(c)
    await c.publish(opts["up"], b"before", qos=1)
    emit("ready")
    await go()  # the test silenced the link
    t0 = time.ticks_ms()
    try:
        await c.publish(opts["up"], b"inflight", qos=1, timeout_ms=opts.get("puback_ms", 1500))
        emit("published")
    except OSError as e:
        emit("no_puback", error=str(e), ms=time.ticks_diff(time.ticks_ms(), t0))
        emit("closed", connected=c._writer is not None, inflight=pids(c))
    s.cancel()
    await go()  # the test cut the link and restarted the broker
    s = await until_up(c, resubscribe=False)
    await until_acked(c)
    await go()  # the test stops the broker under a live link
    emit("lost", error=await s.end())
    s = await until_up(c, resubscribe=False)
    await go()  # the test published a downlink and saw it here
    s.cancel()
    await c.disconnect()


async def unreachable():
    """No broker at boot: refused at once, again and again, until one starts."""
    c = make()
    s = await until_up(c)
    await c.publish(opts["up"], b"hello", qos=1)
    emit("published", inflight=pids(c))
    s.cancel()
    await c.disconnect()


async def halfopen():
    """A silent link (nothing gets through, TCP does not notice) is found dead within
    twice the keepalive; then the client comes back."""
    c = make()
    s = await until_up(c)
    await c.publish(opts["up"], b"one", qos=1)
    emit("ready", keepalive=c.keepalive)
    await go()  # the test silenced the link
    t0 = time.ticks_ms()
    error = await s.end()
    emit("dead", error=error, ms=time.ticks_diff(time.ticks_ms(), t0), connected=c._writer is not None)
    await go()  # the link is back
    s = await until_up(c)
    await c.publish(opts["up"], b"two", qos=1)
    emit("published", inflight=pids(c))
    s.cancel()
    await c.disconnect()


async def noack():
    """A broker that never PUBACKs: publish() fails within its time-out and the link is
    closed; the next session sends the message again."""
    c = make()
    s = await until_up(c)
    t0 = time.ticks_ms()
    try:
        await c.publish(opts["up"], b"lost?", qos=1, timeout_ms=opts.get("puback_ms", 1000))
        emit("published")
    except OSError as e:
        emit("no_puback", error=str(e), ms=time.ticks_diff(time.ticks_ms(), t0))
    emit("closed", connected=c._writer is not None, inflight=pids(c), ended=await s.end())
    s = await until_up(c)
    await until_acked(c)
    s.cancel()
    await c.disconnect()


async def bounded():
    """More unacknowledged messages than max_inflight: the oldest are dropped, counted."""
    c = make()
    s = await until_up(c)

    async def one(i):
        try:
            await c.publish(opts["up"], b"m%d" % i, qos=1, timeout_ms=1000)
        except OSError:
            pass

    await asyncio.gather(*[one(i) for i in range(c.max_inflight + 2)])
    ended = await s.end()
    emit("closed", connected=c._writer is not None, inflight=pids(c), discards=c.discards, ended=ended)
    s = await until_up(c)
    await until_acked(c)
    s.cancel()
    await c.disconnect()


async def downlink():
    """Downlink from a scripted broker: an oversized message, a message and its DUP."""
    c = make()
    c.max_packet = opts.get("max_packet", c.max_packet)
    s = await until_up(c)
    await go()  # the broker sent its messages and saw the PUBACKs
    emit("counts", oversize=c.oversize)
    s.cancel()
    await c.disconnect()


async def garbage():
    """Bytes that are no MQTT after a good start (a modem's "NO CARRIER" in the stream):
    the link is dropped at once, nothing is delivered."""
    c = make()
    s = await until_up(c)
    t0 = time.ticks_ms()
    emit("lost", error=await s.end(), ms=time.ticks_diff(time.ticks_ms(), t0), errors=c.protocol_errors)


async def main():
    try:
        await globals()[sys.argv[1]]()
    except MQTTError as e:
        emit("error", error=str(e))
    emit("end")


asyncio.run(main())
