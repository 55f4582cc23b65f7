"""The `siaga` command line: help for every command, the docs name every command, and
the unit table against a running gateway."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

from siaga.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def commands():
    _, sub, _ = build_parser()
    for name, p in sub.choices.items():
        groups = ("sim_command", "user_command", "token_command", "unit_command", "ca_command", "db_command")
        nested = [a for a in p._actions if a.dest in groups]
        if nested:
            for sname in nested[0].choices:
                yield f"{name} {sname}"
        else:
            yield name


def api(gateway):
    """Where the gateway is and its supervisor token."""
    return "--api", gateway.url, "--token", gateway.token


def siaga(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "siaga", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize("command", list(commands()))
def test_every_command_has_help_and_is_in_the_docs(command):
    run = siaga(*command.split(), "--help")
    assert run.returncode == 0 and "usage: siaga" in run.stdout
    page = (REPO / "docs" / "cli.md").read_text()
    assert f"siaga {command}" in page, f"docs/cli.md does not mention `siaga {command}`"


def test_the_configuration_page_says_every_setting():
    """docs/configuration.md against the settings table (gateway/config.py): each
    setting's name, default, environment variable and flag."""
    from gateway.config import SETTINGS

    page = (REPO / "docs" / "configuration.md").read_text()
    rows = {line.split("|")[1]: line for line in page.splitlines() if line.startswith("| `")}
    for s in SETTINGS:
        row = next((r for cell, r in rows.items() if f"`{s.name}`" in cell), None)
        assert row is not None, f"docs/configuration.md has no row for `{s.name}`"
        assert f"`{s.env}`" in row, f"{s.name}: {s.env} not in its row"
        if s.flag:
            assert f"`{s.flag}`" in row, f"{s.name}: {s.flag} not in its row"
        if s.default != "":
            shown = f"{s.default:g}" if isinstance(s.default, float) else str(s.default)
            assert f"`{shown}`" in row, f"{s.name}: its default {shown} is not in its row"


def test_units_table(gateway, unit_id):
    gateway.register(unit_id, kind="fire_truck")
    run = siaga("units", *api(gateway))
    assert run.returncode == 0, run.stderr
    line = [x for x in run.stdout.splitlines() if x.startswith(unit_id)][0]
    assert re.search(r"fire_truck\s+offline", line)


def test_a_decommissioned_unit_says_so_in_the_units_table(gateway, unit_id):
    gateway.register(unit_id, kind="ambulance")
    assert gateway.request("POST", f"/api/v1/units/{unit_id}/decommission", {})[0] == 200
    run = siaga("units", *api(gateway))
    assert run.returncode == 0, run.stderr
    line = [x for x in run.stdout.splitlines() if x.startswith(unit_id)][0]
    assert re.search(r"ambulance\s+decommissioned", line)


def test_unknown_unit_is_a_clear_error(gateway):
    run = siaga("unit", "nope-1", *api(gateway))
    assert run.returncode == 2 and "no unit 'nope-1' is registered" in run.stderr


def test_unreachable_gateway_is_a_clear_error():
    run = siaga("units", "--api", "http://127.0.0.1:9")
    assert run.returncode == 2 and "cannot reach the gateway" in run.stderr


def test_press_on_a_unit_that_is_not_running(tmp_path):
    run = siaga("sim", "press", "amb-99", "3", "--data", str(tmp_path))
    assert run.returncode == 2 and "no virtual unit 'amb-99' is running" in run.stderr


def test_decode_a_captured_position_for_a_technician():
    hexpayload = "500003000000116b0ab0acfeaeba6543e6fb0404d26a0e09096b0ab0ad"
    run = siaga("decode", "siaga/amb-01/pos", hexpayload)
    assert run.returncode == 0 and '"lat": -2.2103451' in run.stdout
    bad = siaga("decode", "siaga/amb-01/pos", "dead")
    assert bad.returncode == 2 and "not a multiple of 29" in bad.stderr


def test_dispatch_from_the_command_line(gateway, vunits, unit_id):
    gateway.register(unit_id, kind="ambulance")
    unit = vunits(unit_id)
    wait_until(lambda: gateway.unit(unit_id)["position"], what="a position")
    unit.press(2)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "available", what="available")

    near = siaga("nearest", "--lat=-2.2", "--lon=113.92", "--incident-kind", "medical", *api(gateway))
    assert near.returncode == 0 and unit_id in near.stdout and " km " in near.stdout
    run = siaga("assign", unit_id, "--lat=-2.2", "--lon=113.92", "--kind", "medical", *api(gateway))
    assert run.returncode == 0 and f"{unit_id}: assigned" in run.stdout, run.stderr
    run = siaga("release", unit_id, *api(gateway))
    assert run.returncode == 0 and f"{unit_id}: available" in run.stdout
    run = siaga("status", unit_id, "6", "--reason", "ban bocor", *api(gateway))
    assert run.returncode == 0 and "out_of_service, status 6 Tidak siaga (dispatcher)" in run.stdout
    run = siaga("lock", unit_id, *api(gateway))
    assert run.returncode == 0 and "status_locked" in run.stdout
    bad = siaga("status", unit_id, "5", "--reason", "x", *api(gateway))
    assert bad.returncode == 2 and "not a status a dispatcher can set" in bad.stderr


def test_a_reader_that_stops_early_is_no_error(gateway, unit_id, monkeypatch):
    """`siaga units | head -1`: the pipe closes under the table; that is no traceback."""
    from siaga.cli import main

    gateway.register(unit_id)
    read, write = os.pipe()
    os.close(read)
    monkeypatch.setattr(sys, "stdout", open(write, "w", buffering=1))
    monkeypatch.setenv("SIAGA_TOKEN", gateway.token)
    assert main(["units", "--api", gateway.url]) == 0
