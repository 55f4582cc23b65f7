"""Firmware tests run in the MicroPython unix port with a capped heap, one pytest test per
firmware test function (tests/firmware/test_*.py)."""

import re
import subprocess
from pathlib import Path

import pytest

from simulators import vunit

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "tests" / "firmware"
HEAP = "128K"


def _cases():
    for path in sorted(HERE.glob("test_*.py")):
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M):
            yield pytest.param(path.stem, name, id=f"{path.stem}::{name}")


def run_micropython(args, cwd, heap=HEAP, timeout=120, env=None):
    path = (REPO / "firmware" / "lib", REPO / "firmware", REPO / "firmware" / "tools", HERE)
    run = vunit.run_micropython(args, cwd, heap, path, dict(env or {}, SIAGA_REPO=str(REPO)), timeout=timeout)
    return subprocess.CompletedProcess(run.args, run.returncode, run.stdout.decode(), run.stderr.decode())


@pytest.mark.parametrize("module,function", list(_cases()))
def test_firmware(module, function, tmp_path):
    run = run_micropython([str(HERE / "runner.py"), f"{module}:{function}"], cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and f"ok {module} {function}" in out, out
