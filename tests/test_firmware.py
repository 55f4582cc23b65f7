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


def test_frozen_code_comes_first_unless_an_image_was_installed(tmp_path):
    # firmware/main.py orders the search path; provisioning/image.py marks its main.py
    from provisioning import image

    main = (REPO / "firmware" / "main.py").read_text()
    installed = (image.build(tmp_path / "image") / "main.py").read_text()
    assert "\nUPDATE = None" in main and '\nUPDATE = "image"' in installed
    probe = "import sys\nsys.path[:] = ['', '.frozen', '/lib']\n%s\nprint(sys.path)\n"
    for source, expected in (
        (main, "['.frozen', '', '/lib', 'lib']"),
        (installed, "['', '/lib', 'lib', '.frozen']"),
    ):
        head = source.split("\n_search_path()\n")[0]  # the rule, not the firmware's start
        (tmp_path / "probe.py").write_text(probe % head + "_search_path()\nprint(sys.path)\n")
        run = run_micropython([str(tmp_path / "probe.py")], cwd=tmp_path)
        assert run.returncode == 0 and run.stdout.split("\n")[1] == expected, run.stdout + run.stderr
