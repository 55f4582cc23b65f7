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
