# The virtual board of the MicroPython unix port. Its hardware is simulated by
# `siaga sim unit` and speaks the real protocols over pseudo-terminals:
#   gnss   NMEA 0183 bytes, as from a receiver's UART
#   panel  the crew panel, one line per event
#          in:  "K <key> <1|0>"  key down / up (raw: may bounce)
#               "P 0"            ignition off: shut down cleanly
#               "V <volts>"      the vehicle's supply voltage now (e.g. "V 13.8")
#               "H busy"|"H stall"  fault injection: the event loop spins for ever, or
#                                the keys task stops (to prove the watchdog)
#               "H fill MS"      fault injection: take every block of the heap and hold
#                                them MS ms (0: for good, a leak), to prove that the unit
#                                lives through a full heap (docs/firmware-memory.md)
#                                (fault injection is boards/vfaults.py, loaded when asked)
#          out: "L <key> <off|on|blink|error>"  a key's LED
#               "B <1|0>"        buzzer
#               "W"              the watchdog is fed (the simulator resets the unit
#                                when it is not fed for its timeout)
# The pty paths come in the environment variable SIAGA_VBOARD as "gnss=PATH,panel=PATH".
# With "flash=PATH:BLOCKS" too, the journal lives on a littlefs of BLOCKS 4 KB blocks in
# the file PATH (boards/vflash.py): a flash of a board's size that can fill up.
# With "modem=PATH:MODEL" the modem driver talks AT to a modem simulator on that pty: it
# starts, registers and reports signal, while data still goes over the host's sockets.
import asyncio
import os
import time

from boards.base import Board
from heap import borrow


def _paths():
    spec = os.getenv("SIAGA_VBOARD") or ""
    out = {}
    for part in spec.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


class VirtualBoard(Board):
    name = "virtual"
    revision = "1"

    def __init__(self):
        paths = _paths()
        self._gnss_path = paths.get("gnss")
        self._panel_path = paths.get("panel")
        self._keys = {}
        self._supply = None  # volts, once the simulator says
        self._panel_out = open(self._panel_path, "wb") if self._panel_path else None

    def gnss_stream(self):
        if not self._gnss_path:
            return None
        return asyncio.StreamReader(open(self._gnss_path, "rb"))

    def key(self, number):
        return self._keys.get(number, False)

    def _emit(self, line):
        if self._panel_out is not None:
            self._panel_out.write(line.encode() + b"\n")

    def led(self, number, mode):
        self._emit("L %d %s" % (number, mode))

    def buzzer(self, on):
        self._emit("B %d" % (1 if on else 0))

    def rtc_time(self):
        return time.time()

    def supply_volts(self):
        return self._supply

    def cellular(self, cfg, log=print):
        spec = _paths().get("modem")
        if not spec:
            return None
        import modem
        from cellular import Cellular

        path, model = spec.rsplit(":", 1)
        driver = modem.MODELS[model](asyncio.StreamReader(open(path, "rb")), open(path, "wb"))
        return Cellular(driver, cfg, log=log)

    def storage(self):
        spec = _paths().get("flash")
        if not spec:
            return "."
        from boards import vflash

        path, blocks = spec.rsplit(":", 1)
        return vflash.mount(path, int(blocks))

    def reset_cause(self):
        return os.getenv("SIAGA_RESET_CAUSE") or "power_on"

    def _panel_line(self, line, unit):
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"K":
            self._keys[int(parts[1])] = parts[2] == b"1"
        elif len(parts) == 2 and parts[0] == b"V":
            self._supply = round(float(parts[1]), 1)
        elif parts == [b"P", b"0"]:
            unit.shutdown()
        elif parts and parts[0] == b"H":  # fault injection, for the tests: loaded when asked
            borrow("boards.vfaults").inject(parts, unit)

    async def _feed(self, unit):
        while True:
            try:
                if unit.healthy():
                    self._emit("W")
            except MemoryError:
                unit.out_of_memory("board")
            await asyncio.sleep_ms(1000)

    async def run(self, unit):
        if not self._panel_path:
            while True:
                await asyncio.sleep(3600)
        asyncio.create_task(self._feed(unit))
        panel = asyncio.StreamReader(open(self._panel_path, "rb"))
        while True:
            try:
                line = await panel.readline()
                if line:
                    self._panel_line(line, unit)
                else:
                    await asyncio.sleep_ms(100)  # the simulator went away
            except MemoryError:  # a line lost: the simulator's next one reads cleanly
                unit.out_of_memory("board")
