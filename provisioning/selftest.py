"""The self-test after a unit's reboot: what a technician checks on the bench, read from
the unit's serial console and from the gateway.

    [PASS] firmware: boot 3 of unit amb-07 (reset: soft)
    [PASS] broker: connected over TLS to 127.0.0.1:8883
    [PASS] gateway: birth seen (boot 3, firmware 0.9.0, board virtual/1)
    [PASS] GNSS: 12 sentences in 5 s
    [PASS] supply: 13.8 V
    [PASS] modem: answers and registered (home), signal -73 dBm
    [PASS] key 6: press stored by the gateway (seq 4)
    [PASS] LED 6: on (the gateway's confirmation arrived)

The key pressed is 6, "out of service": a unit on the technician's bench is out of
service, so the test press leaves it in the state it is really in. Keys and LEDs need
someone at the unit: the technician (prompted), or, on a virtual board, its panel's
control socket. Exit code 0 only when every required check passes.
"""

import re
import threading
import time

import serial

from gateway.client import Client

TEST_KEY = 6  # "Tidak siaga / out of service": what a unit on the bench is
SUPPLY_RANGE = (9.0, 32.0)  # volts a unit runs on (hardware/README.md: 12 and 24 V vehicles)


class Check:
    def __init__(self, name, ok, detail, required=True):
        self.name, self.ok, self.detail, self.required = name, ok, detail, required

    @property
    def mark(self):
        return {True: "PASS", False: "FAIL", None: "N/A "}[self.ok]

    def __str__(self):
        return f"[{self.mark}] {self.name}: {self.detail}"


class Console:
    """The lines the unit writes to its serial port, read in the background."""

    def __init__(self, port, serial_port=None):
        self.port = port
        self.serial = serial_port  # an open one (mpremote's, which sent the reset), or opened here
        self.lines = []
        self._stop = threading.Event()
        self._new = threading.Condition()

    def start(self):
        if self.serial is None:
            self.serial = serial.Serial(self.port, 115200, timeout=0.2)
        else:
            self.serial.timeout = 0.2
        self._thread = threading.Thread(target=self._read, daemon=True, name="selftest-console")
        self._thread.start()
        return self

    def _read(self):
        buf = b""
        while not self._stop.is_set():
            try:
                buf += self.serial.read(512)
            except (OSError, serial.SerialException):
                return
            *lines, buf = buf.split(b"\n")
            if lines:
                with self._new:
                    self.lines += [raw.decode(errors="replace").strip() for raw in lines]
                    self._new.notify_all()

    def wait_for(self, pattern, timeout, start=0):
        """The first match of `pattern` in a line from index `start` on, or None."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._new.wait(left)

    def close(self):
        self._stop.set()
        self._thread.join(2)


def _poll(fn, timeout, interval=0.3):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(interval)


class TechnicianPanel:
    """The unit's panel as the technician at it works it: asked at the terminal
    (`ask(question) -> bool`). A virtual board's panel (simulators) has the same two
    methods: `press(key) -> bool` (pressed), `led_on(key) -> (on, what was seen)`."""

    def __init__(self, ask):
        self.ask = ask

    def press(self, key):
        return self.ask(f"press key {key} (out of service) on the unit's panel, then Enter")

    def led_on(self, key):
        ok = bool(self.ask(f"is LED {key} lit steadily (blinking first, then on)? [y/n]"))
        return ok, "confirmed by the technician" if ok else "not lit as it should be"


class SelfTest:
    """`panel` presses the test key and reads its LED (TechnicianPanel, or a virtual
    board's); None: nobody at the unit, so the key and LED checks cannot run and fail."""

    def __init__(self, unit_id, port, api, token=None, panel=None, virtual=False, timeout=45.0):
        self.unit_id = unit_id
        self.port = port
        self.api = api.rstrip("/")
        self.token = token
        self.client = Client(self.api, token)
        self.panel = panel
        self.virtual = virtual
        self.timeout = timeout
        self.checks = []
        self.boot = None

    def run(self, console=None, out=print):
        """Every check in order, printed as it finishes; returns the list of checks."""
        own = console is None
        console = console or Console(self.port).start()
        try:
            for step in (
                self._firmware,
                self._broker,
                self._gateway,
                self._gnss,
                self._supply,
                self._modem,
                self._key_and_led,
            ):
                for check in step(console):
                    self.checks.append(check)
                    out(f"  {check}")
        finally:
            if own:
                console.close()
                console.serial.close()
        return self.checks

    @property
    def passed(self):
        return all(c.ok or not c.required for c in self.checks) and bool(self.checks)

    def _get(self, path):
        return self.client.get(f"/api/v1/units/{self.unit_id}{path}")

    def _firmware(self, console):
        m = console.wait_for(rf"unit {re.escape(self.unit_id)} boot (\d+)", self.timeout)
        if m is None:
            yield Check(
                "firmware", False, f"no start of unit {self.unit_id} on the console in {self.timeout:.0f} s"
            )
            return
        self.boot = int(m.group(1))
        yield Check("firmware", True, f"boot {self.boot} of unit {self.unit_id}")

    def _broker(self, console):
        m = console.wait_for(r"link up: broker (\S+)", self.timeout)
        if m is None:
            down = console.wait_for(r"link down: (.*)", 0)
            why = down.group(1) if down else "no answer"
            yield Check("broker", False, f"no connection in {self.timeout:.0f} s ({why})")
            return
        yield Check("broker", True, f"connected to {m.group(1).rstrip(',')}")

    def _gateway(self, console):
        def birth():
            dev = (self._get("") or {}).get("device") or {}
            return dev if self.boot is not None and dev.get("boot") == self.boot else None

        dev = _poll(birth, self.timeout if self.boot is not None else 0)
        if not dev:
            yield Check("gateway", False, f"no birth of boot {self.boot} at {self.api}")
            return
        yield Check(
            "gateway",
            True,
            f"birth seen (boot {dev['boot']}, firmware {dev.get('fw')}, board {dev.get('board')}, "
            f"reset: {dev.get('reset')})",
        )

    def _gnss(self, console):
        m = console.wait_for(r"gnss: (\d+) sentences in 5 s", self.timeout)
        if m is None:
            yield Check("GNSS", False, "the unit reported no GNSS figures")
        elif int(m.group(1)) == 0:
            yield Check("GNSS", False, "no NMEA sentence in 5 s: check the receiver and its antenna lead")
        else:
            yield Check("GNSS", True, f"{m.group(1)} sentences in 5 s")

    def _supply(self, console):
        """The board's reading of its supply, within what the unit runs on (9-32 V, the
        12 and 24 V vehicle range): a reading outside it means a wrong divider or a bad
        solder joint, since the unit is running. A board that cannot measure: n/a."""
        m = console.wait_for(r"supply: (\S+) V", 5)
        if m is None or m.group(1) == "None":
            yield Check("supply", None, "n/a: the board does not measure its supply voltage", False)
            return
        volts = float(m.group(1))
        if SUPPLY_RANGE[0] <= volts <= SUPPLY_RANGE[1]:
            yield Check("supply", True, f"{volts:.1f} V")
        else:
            yield Check(
                "supply",
                False,
                f"{volts:.1f} V, outside {SUPPLY_RANGE[0]}-{SUPPLY_RANGE[1]} V while the unit runs: "
                "check the supply divider (220 kΩ / 15 kΩ) and its solder joints",
            )

    def _modem(self, console):
        """The modem answers and registers: the firmware's cellular link says "modem: up"
        with the registration and the signal. A virtual board may have no modem (its data
        path is the host's network): not applicable then."""
        up = console.wait_for(r"modem: up, (\S+), (\S+) dBm", 5 if self.virtual else self.timeout)
        if up:
            yield Check("modem", True, f"answers and registered ({up.group(1)}), signal {up.group(2)} dBm")
            return
        failed = console.wait_for(r"modem: (.*); again in", 0)
        if failed:
            yield Check("modem", False, f"{failed.group(1)}: check the SIM card and the antenna")
        elif self.virtual:
            yield Check(
                "modem", None, "n/a: this virtual board has no modem, its data path is the host's", False
            )
        else:
            yield Check("modem", False, f"no answer from the modem in {self.timeout:.0f} s")

    def _press(self):
        return self.panel is not None and self.panel.press(TEST_KEY)

    def _key_and_led(self, console):
        mark = len(console.lines)
        if not self._press():
            yield Check(f"key {TEST_KEY}", False, "nobody to press it (run interactively, or give --panel)")
            return

        def stored():
            rows = self._get("/statuses?limit=20")
            return next(
                (
                    r
                    for r in rows
                    if r["key"] == TEST_KEY and r["source"] == "crew" and r["boot"] == self.boot
                ),
                None,
            )

        on_console = console.wait_for(rf"key {TEST_KEY} pressed", self.timeout, start=mark)
        row = _poll(stored, self.timeout if on_console else 0)
        if row:
            yield Check(
                f"key {TEST_KEY}", True, f"press stored by the gateway (boot {row['boot']}, seq {row['seq']})"
            )
        elif on_console:
            yield Check(f"key {TEST_KEY}", False, "the unit saw the press but the gateway did not store it")
        else:
            yield Check(f"key {TEST_KEY}", False, "the unit did not see the press: check the panel's cable")
        yield self._led(bool(row))

    def _led(self, confirmed):
        name = f"LED {TEST_KEY}"
        if self.panel is None:
            return Check(name, False, "nobody to look at it (run interactively, or give --panel)")
        on, seen = self.panel.led_on(TEST_KEY)
        return Check(name, on, seen)


def print_summary(checks, out=print):
    failed = [c for c in checks if c.required and not c.ok]
    out("self-test: " + ("PASS" if not failed else f"FAIL ({', '.join(c.name for c in failed)})"))
    return not failed
