"""The hardware documents and the board classes describe the same boards, and every pin
suits its chip.

Each hardware/*.md (but README.md) names its board class(es) in a line
"Board class: `boards.MODULE.CLASS`" and holds one pin table
`| signal | gpio | direction | notes |` and one UART table `| port | uart | baud | notes |`.
These tests compare them with the class's data both ways, check the pins against the
chip's facts (kept here, independent of the firmware), import the board modules under
CPython and MicroPython, and run ESP32Board on a simulated `machine` in the unix port.
"""

import importlib
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from simulators.vunit import micropython_bin

REPO = Path(__file__).resolve().parent.parent
HARDWARE = REPO / "hardware"
PIN_HEADER = "| signal | gpio | direction | notes |"
UART_HEADER = "| port | uart | baud | notes |"
if str(REPO / "firmware") not in sys.path:
    sys.path.insert(0, str(REPO / "firmware"))  # the `boards` package only

boards = importlib.import_module("boards")
esp32 = importlib.import_module("boards.esp32")

# Chip facts, from Espressif's datasheets (ESP32 §2.2 and WROOM-32E; ESP32-S3 §2.3 and
# WROOM-1). "reserved": never to be wired; "input_only": no output driver, no pull-ups;
# "strapping": sampled at reset, so never an input that may be held (a key) or any input.
CHIPS = {
    "esp32": {
        "gpios": set(range(0, 20)) | {21, 22, 23, 25, 26, 27} | set(range(32, 40)),
        "reserved": set(range(6, 12)) | {1, 3},  # SPI flash; UART0 console
        "input_only": set(range(34, 40)),
        "strapping": {0, 2, 5, 12, 15},
        "adc1": set(range(32, 40)),
        "adc2": {0, 2, 4, 12, 13, 14, 15, 25, 26, 27},
        "jtag_strap": set(),
    },
    "esp32s3": {
        "gpios": set(range(0, 22)) | set(range(26, 49)),
        "reserved": set(range(26, 33)) | {19, 20, 43, 44},  # flash bus; USB; UART0 console
        "input_only": set(),
        "strapping": {0, 3, 45, 46},
        "adc1": set(range(1, 11)),
        "adc2": set(range(11, 21)),
        # read at reset only when the JTAG-select eFuse is burned (S3 TRM, strapping
        # pins): usable as an output
        "jtag_strap": {3},
    },
}
REQUIRED = [f"key_{n}" for n in range(10)] + [f"led_{n}" for n in range(10)]
REQUIRED += ["modem_tx", "modem_rx", "modem_pwrkey", "modem_reset", "gnss_tx", "gnss_rx"]
REQUIRED += ["buzzer", "ignition_sense", "supply_sense", "status_led"]


def reserved(board):
    pins = set(CHIPS[board.chip]["reserved"])
    module = board.module
    if board.chip == "esp32s3" and ("R8" in module or "R16" in module or "WROOM-2" in module):
        pins |= set(range(33, 38))  # octal PSRAM (and octal flash)
    if board.chip == "esp32" and "WROVER" in module:
        pins |= {16, 17}  # PSRAM
    return pins


def table(text, header):
    """The rows of the one markdown table under `header`, as lists of cell texts."""
    lines = text.splitlines()
    assert lines.count(header) == 1, f"expected exactly one table headed {header!r}"
    rows = []
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().strip("`") for c in line.strip().strip("|").split("|")])
    return rows


def documented(path):
    """(module, class) named by a hardware document."""
    return re.findall(r"^Board class: `boards\.(\w+)\.(\w+)`", path.read_text(), re.M)


DOCS = sorted(p for p in HARDWARE.glob("*.md") if p.name != "README.md")
CASES = [(doc, module, cls) for doc in DOCS for module, cls in documented(doc)]
IDS = [f"{doc.name}:{cls}" for doc, _, cls in CASES]


def board_of(module, cls):
    return getattr(importlib.import_module("boards." + module), cls)


def doc_pins(doc):
    pins = {}
    for row in table(doc.read_text(), PIN_HEADER):
        assert len(row) == 4, f"{doc.name}: row {row} does not have 4 cells"
        signal, gpio, how, _ = row
        assert signal not in pins, f"{doc.name}: {signal} twice"
        pins[signal] = (gpio, how)
    return pins


def test_every_document_names_a_class_and_every_class_has_a_document():
    assert DOCS, "no hardware documents"
    for doc in DOCS:
        assert documented(doc), f"{doc.name} has no 'Board class:' line"
    in_docs = {(module, cls) for _, module, cls in CASES}
    assert in_docs == set(boards.BOARDS.values())


@pytest.mark.parametrize("name", sorted(boards.BOARDS))
def test_registry_names_match_the_classes(name):
    board = boards.board_class(name)
    assert f"{board.name}/{board.revision}" == name
    assert issubclass(board, esp32.ESP32Board)
    assert boards.board_class(board.__name__) is board, "config may name the class too"


def test_board_selection():
    assert boards.board_class("") is boards.board_class(boards.DEFAULT)
    assert boards.DEFAULT in boards.BOARDS
    with pytest.raises(ValueError, match="unknown board"):
        boards.board_class("esp32-ec25/9")


@pytest.mark.parametrize("doc,module,cls", CASES, ids=IDS)
def test_pin_table_matches_the_class_both_ways(doc, module, cls):
    board = board_of(module, cls)
    in_doc = doc_pins(doc)
    in_class = {signal: (str(loc), esp32.direction(signal)) for signal, loc in board.pins.items()}
    assert sorted(set(in_doc) - set(in_class)) == [], "in the document, not in the class"
    assert sorted(set(in_class) - set(in_doc)) == [], "in the class, not in the document"
    differ = {s: (in_doc[s], in_class[s]) for s in in_doc if in_doc[s] != in_class[s]}
    assert differ == {}, "(document, class) differ"


@pytest.mark.parametrize("doc,module,cls", CASES, ids=IDS)
def test_uart_table_matches_the_class(doc, module, cls):
    board = board_of(module, cls)
    uarts = {row[0]: (int(row[1]), int(row[2])) for row in table(doc.read_text(), UART_HEADER)}
    assert uarts["modem"] == board.modem_uart
    assert uarts["gnss"] == board.gnss_uart
    assert board.modem_uart[0] != board.gnss_uart[0]
    assert {board.modem_uart[0], board.gnss_uart[0]} <= {1, 2}, "UART0 is the console"


@pytest.mark.parametrize("name", sorted(boards.BOARDS))
def test_every_signal_is_known_and_the_required_ones_are_there(name):
    board = boards.board_class(name)
    assert [s for s in board.pins if esp32.direction(s) is None] == []
    assert [s for s in REQUIRED if s not in board.pins] == []
    own_gnss = board.gnss != board.modem
    assert ("gnss_pps" in board.pins) == own_gnss, "PPS only from a receiver of its own"
    assert board.chip in CHIPS and board.module and board.modem and board.gnss


@pytest.mark.parametrize("name", sorted(boards.BOARDS))
def test_no_pin_is_used_twice(name):
    board = boards.board_class(name)
    counts = Counter(str(loc) for loc in board.pins.values())
    for loc, n in counts.items():
        if n > 1:
            users = {s for s, v in board.pins.items() if str(v) == loc}
            assert any(users <= set(group) for group in board.shared), f"{loc} used by {users}"


@pytest.mark.parametrize("name", sorted(boards.BOARDS))
def test_gpios_suit_the_chip(name):
    board = boards.board_class(name)
    chip = CHIPS[board.chip]
    for signal, loc in board.pins.items():
        if type(loc) is not int:
            continue
        how = esp32.direction(signal)
        assert loc in chip["gpios"], f"{signal}: GPIO {loc} does not exist on {board.chip}"
        assert loc not in reserved(board), f"{signal}: GPIO {loc} is reserved on {board.module}"
        if loc in chip["input_only"]:
            assert how == "in", f"{signal}: GPIO {loc} is input-only"
            assert not signal.startswith("key_"), f"{signal}: GPIO {loc} has no pull-up"
        if loc in chip["strapping"]:
            assert how == "out", f"{signal}: GPIO {loc} is a strapping pin"
            assert loc in chip["jtag_strap"], f"{signal}: GPIO {loc} is sampled at every reset"
        if signal.endswith("_sense") and signal != "ignition_sense":
            # an analogue input; on the classic ESP32 ADC2 only works with Wi-Fi off,
            # which a unit (data over LTE) always has; on the S3 only ADC1 is trusted
            adc = chip["adc1"] | (chip["adc2"] if board.chip == "esp32" else set())
            assert loc in adc, f"{signal}: GPIO {loc} has no usable ADC channel"


@pytest.mark.parametrize("name", sorted(boards.BOARDS))
def test_expander_and_shift_register_pins_suit_their_parts(name):
    board = boards.board_class(name)
    for signal, loc in board.pins.items():
        if type(loc) is int:
            continue
        part, bit = esp32.part_pin(loc)
        if part == "mcp23017":
            assert {"i2c_sda", "i2c_scl"} <= set(board.pins), f"{signal}: no I2C bus"
            if esp32.direction(signal) == "in":
                assert bit not in (7, 15), f"{signal}: GPA7/GPB7 are output-only"
        else:
            assert {"hc595_data", "hc595_clock", "hc595_latch"} <= set(board.pins)
            assert bit < 8 * board.hc595_count, f"{signal}: {loc} is past the chain"
            assert esp32.direction(signal) == "out"


def test_board_modules_import_under_micropython():
    script = (
        "import sys; sys.path[:0]=['firmware','firmware/lib']; "
        "import boards.esp32s3_sim7600_m8n, boards.esp32_ec25"
    )
    run = subprocess.run(
        [micropython_bin(), "-X", "heapsize=128K", "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


FAKE_MACHINE = """
# The esp32 port's machine module as far as ESP32Board uses it; records what it drives.
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
cause = PWRON_RESET
levels = {}  # GPIO -> level an input reads; 1 (pulled up) if absent
writes = []  # (GPIO, level) in order
made = {}  # GPIO -> (mode, pull)
pwms, uarts, wdts = [], [], []


def reset_cause():
    return cause


class Pin:
    IN, OUT, PULL_UP = 1, 3, 2

    def __init__(self, n, mode=-1, pull=None, value=None):
        self.n = n
        if mode != -1:
            made[n] = (mode, pull)
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return levels.get(self.n, 1)
        writes.append((self.n, 1 if v else 0))


class PWM:
    def __init__(self, pin, freq=0, duty_u16=0):
        self.pin, self.freq, self.duty = pin.n, freq, duty_u16
        pwms.append(self)

    def duty_u16(self, d):
        self.duty = d


class UART:
    def __init__(self, uid, baudrate=0, tx=None, rx=None, rxbuf=0, timeout=0):
        uarts.append((uid, baudrate, tx, rx))


class I2C:
    regs = {}  # (address, register) -> byte
    fail = False

    def __init__(self, uid, scl=None, sda=None, freq=0):
        self.freq = freq

    def writeto_mem(self, addr, reg, buf):
        if I2C.fail:
            raise OSError(19)
        for i, b in enumerate(buf):
            I2C.regs[(addr, reg + i)] = b

    def readfrom_mem_into(self, addr, reg, buf):
        if I2C.fail:
            raise OSError(19)
        for i in range(len(buf)):
            buf[i] = I2C.regs.get((addr, reg + i), 0xFF)


class ADC:
    ATTN_11DB = 3
    uv = {}  # GPIO -> microvolts at the pin
    made = {}  # GPIO -> attenuation

    def __init__(self, pin, atten=None):
        self.n = pin.n
        ADC.made[self.n] = atten

    def read_uv(self):
        return ADC.uv.get(self.n, 0)


class WDT:
    def __init__(self, timeout=0):
        self.timeout, self.fed = timeout, 0
        wdts.append(self)

    def feed(self):
        self.fed += 1
"""

BEHAVIOUR = """
import sys
sys.path[:0] = ['.', REPO + '/firmware', REPO + '/firmware/lib']
import fakemachine as m
sys.modules['machine'] = m
import asyncio
import time
from boards.esp32_ec25 import ESP32EC25_R1
from boards.esp32s3_sim7600_m8n import ESP32S3SIM7600M8N_R1


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def latched(board):
    # a 74HC595 chain: shift on SRCLK rising, copy to the outputs on RCLK rising
    p, data, reg, out = board.pins, 0, 0, None
    for n, v in m.writes:
        if n == p['hc595_data']:
            data = v
        elif n == p['hc595_clock'] and v:
            reg = (reg << 1 | data) & 0xFFFF
        elif n == p['hc595_latch'] and v:
            out = reg
    return out


def leds_and_buzzer(board):
    check(latched(board) == 0, 'chain cleared at start')
    board.led(3, 'on')
    board.led(9, 'on')
    check(latched(board) == 1 << 3 | 1 << 9, 'LEDs 3 and 9 on')
    board.led(3, 'blink')
    board._show_leds(0)
    check(latched(board) == 1 << 3 | 1 << 9, 'blink: on in the first half')
    board._show_leds(board.blink_ms)
    check(latched(board) == 1 << 9, 'blink: off in the second half')
    board.led(9, 'error')
    board._show_leds(board.error_ms)
    check(latched(board) == 1 << 3, 'error: fast flash, off phase (3 still blinking on)')
    board._show_leds(2 * board.error_ms)
    check(latched(board) == 1 << 3 | 1 << 9, 'error: on phase')
    try:
        board.led(1, 'bright')
        check(False, 'bad mode accepted')
    except ValueError:
        pass
    board.buzzer(True)
    pwm = m.pwms[-1]
    check(pwm.pin == board.pins['buzzer'] and pwm.freq == board.buzzer_hz, 'buzzer PWM')
    check(pwm.duty == 32768, 'buzzer on')
    board.buzzer(False)
    check(pwm.duty == 0, 'buzzer off')


def common(board):
    p = board.pins
    for s in ('modem_pwrkey', 'modem_reset', 'modem_dtr'):
        check((p[s], 0) in m.writes, s + ' held inactive')
    check(board.reset_cause() == 'power_on', 'power on')
    check(board.gnss_stream() is not None, 'gnss stream')
    check(m.uarts[-1] == board.gnss_uart + (p['gnss_tx'], p['gnss_rx']), 'gnss uart')
    board.open_modem_uart()
    check(m.uarts[-1] == board.modem_uart + (p['modem_tx'], p['modem_rx']), 'modem uart')
    check(not board.ignition_on(), 'ignition off: input high')
    m.levels[p['ignition_sense']] = 0
    check(board.ignition_on(), 'ignition on: input low')
    check(board.rtc_time() > 1e9, 'Unix seconds')
    s = p['supply_sense']
    check(m.ADC.made[s] == m.ADC.ATTN_11DB, 'supply ADC at 11 dB')
    m.ADC.uv[s] = 804255  # 12.6 V through 220 kΩ over 15 kΩ
    check(board.supply_volts() == 12.6, 'supply 12.6 V: %r' % board.supply_volts())
    m.ADC.uv[s] = 1787234  # 28.0 V
    check(board.supply_volts() == 28.0, 'supply 28.0 V: %r' % board.supply_volts())
    leds_and_buzzer(board)


def test_s3():
    m.writes[:] = []
    board = ESP32S3SIM7600M8N_R1()
    common(board)
    k3 = board.pins['key_3']
    check(m.made[k3] == (m.Pin.IN, m.Pin.PULL_UP), 'keys pulled up')
    check(not board.key(3), 'released')
    m.levels[k3] = 0
    check(board.key(3) and not board.key(2), 'key 3 down (active low)')


def test_ec25():
    m.writes[:] = []
    board = ESP32EC25_R1()
    common(board)
    regs, a = m.I2C.regs, board.mcp23017_address
    check((regs[(a, 0)], regs[(a, 1)]) == (0x7F, 0x7F), 'inputs but GPA7/GPB7')
    check((regs[(a, 0x0C)], regs[(a, 0x0D)]) == (0x7F, 0x7F), 'pull-ups on the inputs')
    check(not any(board.key(n) for n in range(10)), 'all released')
    regs[(a, 0x12)], regs[(a, 0x13)] = 0xFF & ~(1 << 2), 0xFF & ~1
    time.sleep_ms(board.expander_cache_ms + 5)
    check([n for n in range(10) if board.key(n)] == [2, 7], 'GPA2 and GPB0 down')
    m.I2C.fail = True
    time.sleep_ms(board.expander_cache_ms + 5)
    check(not board.key(2) and board.io_errors == 1, 'expander gone: released, counted')
    m.I2C.fail = False


def test_reset_causes():
    causes = ((m.WDT_RESET, 'watchdog'), (m.HARD_RESET, 'crash'), (m.SOFT_RESET, 'soft'), (0, 'unknown'))
    for cause, name in causes:
        m.writes[:] = []  # each board clears its chain; the log need not grow
        m.cause = cause
        check(ESP32S3SIM7600M8N_R1().reset_cause() == name, name)
    m.cause = m.PWRON_RESET


class Unit:
    ok = True

    def healthy(self):
        return self.ok


def run_board(board, unit):
    try:
        asyncio.run(asyncio.wait_for_ms(board.run(unit), 300))
    except asyncio.TimeoutError:
        pass
    return m.wdts[-1]


def test_run():
    m.writes[:] = []
    board = ESP32S3SIM7600M8N_R1()
    m.writes[:] = []
    wdt = run_board(board, Unit())
    check(wdt.timeout == board.wdt_ms and wdt.fed >= 3, 'watchdog started and fed')
    check(any(n == board.pins['status_led'] for n, v in m.writes), 'heartbeat')
    sick = Unit()
    sick.ok = False
    check(run_board(ESP32S3SIM7600M8N_R1(), sick).fed == 0, 'a hung task: the watchdog is not fed')


test_s3()
test_ec25()
test_reset_causes()
test_run()
print('boards ok')
"""


def test_esp32_board_on_a_simulated_machine(tmp_path):
    (tmp_path / "fakemachine.py").write_text(FAKE_MACHINE)
    (tmp_path / "behaviour.py").write_text(f"REPO = {str(REPO)!r}\n" + BEHAVIOUR)
    run = subprocess.run(
        [micropython_bin(), "-X", "heapsize=128K", "behaviour.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "boards ok" in run.stdout, run.stdout + run.stderr
