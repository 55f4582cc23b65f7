# Runs the firmware's modem driver in the unix port against the modem simulator's pty:
#   micropython modem_scenario.py SCENARIO [ARG ...]
# The pty path is in SIAGA_MODEM, the model in SIAGA_MODEM_MODEL (SIM7600 or EC25). Each
# step prints one JSON line; a ModemError prints {"error": reason, "detail": ...} and ends
# the scenario. tests/test_modem.py drives it.
import asyncio
import json
import os
import sys
import time

import modem


def emit(**fields):
    print(json.dumps(fields))


def make():
    path = os.getenv("SIAGA_MODEM")
    cls = modem.MODELS[os.getenv("SIAGA_MODEM_MODEL") or "SIM7600"]
    m = cls(asyncio.StreamReader(open(path, "rb")), open(path, "wb"))
    # short time-outs: the simulator answers at once
    m.command_ms = 1000
    m.probe_ms = 200
    m.boot_ms = 600
    m.reg_poll_ms = 20
    m.dial_ms = 2000
    m.guard_ms = 150
    m.sim_retry_ms = 50
    return m


async def normal(m):
    await m.start()
    emit(step="start", sim=m.sim, model=m.modem_model, firmware=m.firmware, gnss=m.gnss)
    emit(step="register", reg=await m.register(2000))
    emit(step="signal", **(await m.signal()))
    await m.set_apn("internet", "user", "secret")
    emit(step="apn", apn=m.apn)
    emit(step="connect", line=await m.connect_data(), state=m.state)
    await m.hangup()
    emit(step="hangup", state=m.state)
    await m.refresh()
    emit(step="telemetry", **m.telemetry())


async def start(m, pin=None):
    await m.start(pin)
    emit(step="start", sim=m.sim)


async def register(m):
    await m.start()
    t0 = time.ticks_ms()
    reg = await m.register(2000)
    emit(step="register", reg=reg, ms=time.ticks_diff(time.ticks_ms(), t0))


async def errors(m):
    await m.start()
    emit(step="register", reg=await m.register(2000))
    try:
        await m.command("AT+BOGUS")
    except modem.ModemError as e:
        emit(step="bogus", error=e.reason, detail=e.detail)
    await m.refresh()
    emit(step="telemetry", **m.telemetry())


async def drop(m, session="data"):
    await m.start()
    await m.register(2000)
    if session == "data":
        await m.set_apn("internet")
        await m.connect_data()
    events = []
    up = asyncio.Event()

    def changed(event, detail):
        events.append([event, detail])
        if event == "up":
            up.set()

    asyncio.create_task(m.supervise(poll_ms=5000, register_ms=2000, backoff_ms=50, on_change=changed))
    emit(step="connected", state=m.state)  # the test drops the network now
    await asyncio.wait_for_ms(up.wait(), 5000)
    emit(step="recovered", events=events, **m.telemetry())


async def silence(m):
    # the modem stops answering mid-operation: failed polls, backoff, a restart
    await m.start()
    await m.register(2000)
    m.command_ms = 150
    events = []
    up = asyncio.Event()

    def changed(event, detail):
        events.append([event, detail])
        if event == "up":
            up.set()

    supervisor = m.supervise(
        poll_ms=100, register_ms=300, backoff_ms=50, max_backoff_ms=200, on_change=changed
    )
    asyncio.create_task(supervisor)
    emit(step="watching", reg=m.reg)  # the test silences the modem now
    await asyncio.wait_for_ms(up.wait(), 8000)
    emit(step="recovered", events=events, **m.telemetry())


async def silent(m):
    t0 = time.ticks_ms()
    try:
        await m.start()
    finally:
        emit(step="waited", ms=time.ticks_diff(time.ticks_ms(), t0))


async def tcp(m, host, port):
    await m.start()
    await m.register(2000)
    await m.set_apn("internet")
    reader, writer = await m.open_tcp(host, int(port))
    writer.write(b"ping over the modem\n")
    line = await asyncio.wait_for_ms(reader.readline(), 2000)
    emit(step="echo", line=line.decode().strip(), state=m.state)
    await m.hangup()
    emit(step="hangup", state=m.state)
    emit(step="signal", **(await m.signal()))


async def main(name, args):
    m = make()
    try:
        await globals()[name](m, *args)
    except modem.ModemError as e:
        emit(error=e.reason, detail=e.detail)


asyncio.run(main(sys.argv[1], sys.argv[2:]))
