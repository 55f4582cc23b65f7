"""NMEA sentences decoded per second by the firmware's decoder in the MicroPython unix
port; and, against a reference measured in the same run, the sentences it handles per
second (decoded or skipped as not needed) relative to pynmea2 parsing every line in
CPython."""

import time
from pathlib import Path

import pynmea2

from .policy import REPO, run_micropython

CORPUS = REPO.parent / "shared" / "corpus" / "nmea"
LOCAL = REPO / "tests" / "data" / "nmea"


def captures():
    files = sorted(CORPUS.glob("*.log")) if CORPUS.exists() else []
    return [f for f in files if "fuzzy" not in f.name] or sorted(LOCAL.glob("*.log"))


def pynmea2_rate(files, seconds=3.0):
    lines = [ln for f in files for ln in f.read_text(errors="replace").splitlines() if ln.startswith("$")]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for line in lines:
            try:
                pynmea2.parse(line, check=True)
                n += 1
            except (pynmea2.ParseError, ValueError, AttributeError):
                pass
    return n / (time.perf_counter() - start)


def figures():
    files = captures()
    out = run_micropython(
        REPO / "bench" / "mp" / "nmea_speed.py",
        "\n".join(str(Path(f).resolve()) for f in files).encode(),
        heap="8M",
    )[0]
    rate = out["sentences"] * 1000 / out["ms"]  # RMC, GGA, GSA, VTG decoded
    handled = out["handled"] * 1000 / out["ms"]  # and the well-formed ones it skips (GSV, ...)
    return [
        ("firmware.nmea_sentences_per_s", round(rate), "sentences/s"),
        ("firmware.nmea_vs_pynmea2", round(handled / pynmea2_rate(files), 3), "ratio"),
    ]
