# ESP32-class boards (ESP32, ESP32-S3): the Board interface on machine.Pin, UART, PWM, I2C
# and WDT. This is the family; each hardware revision subclasses it with its pin map as
# data and nothing else. hardware/*.md documents the same maps, and tests/test_boards.py
# checks the two against each other and against the chip.
#
# A pin map entry (signal -> location) is an ESP32 GPIO number, or a pin of a part on the
# board: "hc595.N" is output N of the LED shift-register chain (0-7 the 74HC595 wired to
# the ESP32, 8-15 the next one), "mcp23017.GPA0".."mcp23017.GPB7" a pin of the I2C key
# expander. Signal names are seen from the ESP32: modem_tx is what the ESP32 sends.
#
# `machine` is imported inside methods only, so this module also imports under CPython
# and the unix port (the drift test does that).
import asyncio
import time

from boards.base import Board

KEYS = 10
MODES = ("off", "on", "blink", "error")

# How the firmware drives each signal; the docs' direction column must say the same.
# key_N are inputs (active low, pulled up), led_N outputs (lit when high).
DIRECTIONS = {
    "modem_tx": "out",
    "modem_rx": "in",
    "modem_pwrkey": "out",  # high = PWRKEY pulled low (through an NPN)
    "modem_reset": "out",  # high = RESET pulled low (through an NPN)
    "modem_dtr": "out",
    "modem_ri": "in",
    "gnss_tx": "out",
    "gnss_rx": "in",
    "gnss_pps": "in",
    "i2c_sda": "in/out",
    "i2c_scl": "in/out",
    "hc595_data": "out",
    "hc595_clock": "out",
    "hc595_latch": "out",
    "buzzer": "out",
    "ignition_sense": "in",  # low while the ignition is on (optocoupler)
    "supply_sense": "in",  # ADC: the vehicle supply through a divider (supply_divider)
    "status_led": "out",
}

# machine.reset_cause() -> the birth message's "reset". On the esp32 port HARD_RESET
# covers a panic, machine.reset() and the EN pin, so it is reported as a crash; when
# main.py resets the unit itself it notes why on flash first (lib/flashstate.py), and the
# birth gives that reason instead ("memory"). A wake from deep sleep is a normal start.
RESET_CAUSES = (
    ("PWRON_RESET", "power_on"),
    ("WDT_RESET", "watchdog"),
    ("SOFT_RESET", "soft"),
    ("HARD_RESET", "crash"),
    ("DEEPSLEEP_RESET", "power_on"),
)

MCP_IODIR = 0x00  # MCP23017 registers, IOCON.BANK = 0 (A then B, auto-increment)
MCP_GPPU = 0x0C
MCP_GPIO = 0x12
MCP_OLAT = 0x14


def direction(signal):
    """How the firmware uses `signal`: "in", "out", "in/out", or None if it does not."""
    if signal[:4] == "key_" and signal[4:].isdigit():
        return "in"
    if signal[:4] == "led_" and signal[4:].isdigit():
        return "out"
    return DIRECTIONS.get(signal)


def part_pin(location):
    """("hc595", output) or ("mcp23017", bit 0-15) of a location that is not a GPIO."""
    part, _, pin = location.partition(".")
    if part == "hc595" and pin.isdigit():
        return part, int(pin)
    if part == "mcp23017" and len(pin) == 4 and pin[:2] == "GP" and pin[2] in "AB":
        if pin[3] in "01234567":
            return part, (8 if pin[2] == "B" else 0) + int(pin[3])
    raise ValueError("unknown pin location " + location)


class ESP32Board(Board):
    name = "esp32"
    revision = ""
    chip = "esp32"  # "esp32" or "esp32s3": which GPIOs exist and are safe to use
    module = ""  # the module fitted (its flash and PSRAM take further GPIOs)
    modem = ""
    gnss = ""  # the GNSS receiver; the modem's name when its own GNSS is used
    modem_uart = (1, 115200)  # (UART id, baud)
    gnss_uart = (2, 9600)
    i2c = (0, 400000)  # (I2C id, Hz) of the expander bus, when there is one
    mcp23017_address = 0x20
    hc595_count = 0  # 74HC595s in the LED chain
    buzzer_hz = 0  # PWM tone for a passive sounder; 0: on/off for an active one
    pins = {}
    shared = ()  # groups of signals documented to share one GPIO (a bus); none so far

    blink_ms = 500  # "blink": on and off this long each (a press on its way)
    error_ms = 125  # "error": fast flash (a press not delivered)
    tick_ms = 50  # LED patterns, heartbeat and watchdog
    heartbeat_ms = 1000  # status LED: a short flash each period while the loop runs
    wdt_ms = 30000  # the unit resets when the event loop stalls this long; 0: no watchdog
    expander_cache_ms = 5  # one I2C read serves all keys polled within this time
    refresh_ms = 5000  # rewrite expander setup and LED chain (after a glitch or brown-out)
    gnss_rxbuf = 1024
    # supply_sense sees the vehicle supply through 220 kΩ over 15 kΩ: volts = pin volts
    # × (220 + 15) / 15. Read at 11 dB attenuation (about 0.15-2.45 V on the ESP32 with
    # its eFuse calibration: 2.3-38 V at the input), averaged over supply_samples.
    supply_divider = 235 / 15
    supply_samples = 8

    def __init__(self):
        self.io_errors = 0  # failed I2C transfers with the key expander
        self._reset_cause = self._read_reset_cause()
        self._epoch = 946684800 if time.gmtime(0)[0] == 2000 else 0
        self._modes = ["off"] * KEYS
        self._hold_modem_lines()
        self._i2c = None
        self._inputs = 0xFFFF
        self._inputs_at = None
        self._inbuf = bytearray(2)
        self._setup_expander()
        self._keys = [self._key_input(n) for n in range(KEYS)]
        self._word = 0
        self._chain = self._setup_chain()
        self._leds = [self._led_output(n) for n in range(KEYS)]
        self._buzzer = self._setup_buzzer()
        self._ignition = self._gpio("ignition_sense", "in")
        self._supply = self._setup_adc("supply_sense")
        self._status = self._gpio("status_led", "out")

    # pins
    def _gpio(self, signal, how, pull=False):
        from machine import Pin

        n = self.pins.get(signal)
        if n is None:
            return None
        if type(n) is not int:
            raise ValueError(signal + " must be a GPIO")
        if how == "out":
            return Pin(n, Pin.OUT, value=0)
        return Pin(n, Pin.IN, Pin.PULL_UP if pull else None)

    def _setup_adc(self, signal):
        n = self.pins.get(signal)
        if n is None:
            return None
        from machine import ADC, Pin

        return ADC(Pin(n), atten=ADC.ATTN_11DB)

    def _hold_modem_lines(self):
        # PWRKEY and RESET released, DTR low (modem awake) until the modem driver acts
        for signal in ("modem_pwrkey", "modem_reset", "modem_dtr"):
            self._gpio(signal, "out")

    def _uart(self, port, rxbuf=256):
        # both pins always given: a UART left on its default pins takes those GPIOs from
        # whatever else uses them (UART2's default TX is GPIO 17 on the ESP32)
        from machine import UART

        uid, baud = self.modem_uart if port == "modem" else self.gnss_uart
        tx, rx = self.pins[port + "_tx"], self.pins[port + "_rx"]
        return UART(uid, baudrate=baud, tx=tx, rx=rx, rxbuf=rxbuf, timeout=0)

    def open_modem_uart(self):
        """The modem's UART, for the modem driver."""
        return self._uart("modem")

    def cellular(self, cfg, log=print):
        """The LTE link: the modem driver on the modem's UART and pins, then PPP on the
        same UART (network.PPP, MicroPython 1.24 and later) for the data session."""
        if not self.modem:
            return None
        import modem
        from cellular import Cellular

        uart = self.open_modem_uart()
        stream = asyncio.StreamReader(uart)
        pwrkey = self._gpio("modem_pwrkey", "out")
        reset = self._gpio("modem_reset", "out")
        driver = modem.MODELS[self.modem](stream, stream, pwrkey=pwrkey, reset=reset)

        def ppp():
            import network

            link = network.PPP(uart)
            link.active(True)
            link.connect()
            return link

        return Cellular(driver, cfg, ppp=ppp, log=log)

    def gnss_stream(self):
        if "gnss_rx" not in self.pins:
            return None
        return asyncio.StreamReader(self._uart("gnss", self.gnss_rxbuf))

    # keys
    def _key_input(self, number):
        loc = self.pins.get("key_%d" % number)
        if loc is None or type(loc) is int:
            return self._gpio("key_%d" % number, "in", pull=True)
        part, bit = part_pin(loc)
        if part != "mcp23017" or self._i2c is None:
            raise ValueError("key %d: no expander for %s" % (number, loc))
        return bit

    def _setup_expander(self):
        if "i2c_sda" not in self.pins:
            return
        from machine import I2C, Pin

        sda, scl = Pin(self.pins["i2c_sda"]), Pin(self.pins["i2c_scl"])
        self._i2c = I2C(self.i2c[0], scl=scl, sda=sda, freq=self.i2c[1])
        self._configure_expander()

    def _configure_expander(self):
        # every pin an input with its pull-up, except GPA7/GPB7: output-only since the
        # 2022 MCP23017 data sheet, so they are driven low and left unconnected
        addr = self.mcp23017_address
        try:
            self._i2c.writeto_mem(addr, MCP_OLAT, b"\x00\x00")
            self._i2c.writeto_mem(addr, MCP_IODIR, b"\x7f\x7f")
            self._i2c.writeto_mem(addr, MCP_GPPU, b"\x7f\x7f")
        except OSError:
            self.io_errors += 1

    def _expander_inputs(self):
        now = time.ticks_ms()
        if self._inputs_at is None or time.ticks_diff(now, self._inputs_at) >= self.expander_cache_ms:
            self._inputs_at = now
            try:
                self._i2c.readfrom_mem_into(self.mcp23017_address, MCP_GPIO, self._inbuf)
                self._inputs = self._inbuf[0] | self._inbuf[1] << 8
            except OSError:
                self.io_errors += 1
                self._inputs = 0xFFFF  # expander gone: every key reads released
        return self._inputs

    def key(self, number):
        k = self._keys[number]
        if k is None:
            return False
        if type(k) is int:
            return not (self._expander_inputs() >> k) & 1
        return k.value() == 0

    # LEDs
    def _setup_chain(self):
        if not self.hc595_count:
            return None
        chain = [self._gpio(s, "out") for s in ("hc595_data", "hc595_clock", "hc595_latch")]
        self._shift(chain, 0)  # the outputs are random from power-up until the first latch
        return chain

    def _led_output(self, number):
        loc = self.pins.get("led_%d" % number)
        if loc is None or type(loc) is int:
            return self._gpio("led_%d" % number, "out")
        part, bit = part_pin(loc)
        if part != "hc595" or self._chain is None or bit >= 8 * self.hc595_count:
            raise ValueError("LED %d: no shift register output %s" % (number, loc))
        return bit

    def _shift(self, chain, word):
        data, clock, latch = chain
        for i in range(8 * self.hc595_count - 1, -1, -1):  # the last output goes first
            data.value((word >> i) & 1)
            clock.value(1)
            clock.value(0)
        latch.value(1)
        latch.value(0)
        self._word = word

    def _lit(self, mode, now):
        if mode == "blink":
            return (now // self.blink_ms) % 2 == 0
        if mode == "error":
            return (now // self.error_ms) % 2 == 0
        return mode == "on"

    def _show_leds(self, now):
        word = 0
        for n in range(KEYS):
            led = self._leds[n]
            lit = self._lit(self._modes[n], now)
            if type(led) is int:
                word |= lit << led
            elif led is not None:
                led.value(lit)
        if self._chain is not None and word != self._word:
            self._shift(self._chain, word)

    def led(self, number, mode):
        if mode not in MODES:
            raise ValueError("LED mode " + mode)
        self._modes[number] = mode
        self._show_leds(time.ticks_ms())

    # buzzer, ignition, clock, reset cause
    def _setup_buzzer(self):
        n = self.pins.get("buzzer")
        if n is None or not self.buzzer_hz:
            return self._gpio("buzzer", "out")
        from machine import PWM, Pin

        return PWM(Pin(n), freq=self.buzzer_hz, duty_u16=0)

    def buzzer(self, on):
        if self._buzzer is None:
            return
        if self.buzzer_hz:
            self._buzzer.duty_u16(32768 if on else 0)
        else:
            self._buzzer.value(1 if on else 0)

    def ignition_on(self):
        """True while the vehicle's ignition is on (the optocoupler pulls the input low)."""
        return self._ignition is not None and self._ignition.value() == 0

    def supply_volts(self):
        if self._supply is None:
            return None
        uv = 0
        for _ in range(self.supply_samples):
            uv += self._supply.read_uv()  # calibrated by the chip's eFuse
        return round(uv / self.supply_samples * self.supply_divider / 1e6, 1)

    def storage(self):
        return "."  # the board's littlefs root

    def rtc_time(self):
        # not battery-backed: counts from 1970 after power-on until something sets it
        return time.time() + self._epoch

    def _read_reset_cause(self):
        import machine

        cause = machine.reset_cause()
        for const, name in RESET_CAUSES:
            if cause == getattr(machine, const, None):
                return name
        return "unknown"

    def reset_cause(self):
        return self._reset_cause

    # background work
    def _refresh(self):
        if self._i2c is not None:
            self._configure_expander()
        if self._chain is not None:
            self._shift(self._chain, self._word)

    async def run(self, unit):
        import machine

        wdt = machine.WDT(timeout=self.wdt_ms) if self.wdt_ms else None
        refreshed = time.ticks_ms()
        while True:
            if wdt is not None and unit.healthy():
                wdt.feed()  # only while every critical task of the unit is alive
            now = time.ticks_ms()
            try:
                self._show_leds(now)
                if self._status is not None:
                    self._status.value(now % self.heartbeat_ms < 100)
                if time.ticks_diff(now, refreshed) >= self.refresh_ms:
                    refreshed = now
                    self._refresh()
            except MemoryError:
                unit.out_of_memory("board")
            await asyncio.sleep_ms(self.tick_ms)
