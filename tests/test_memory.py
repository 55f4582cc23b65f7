"""The firmware's heap, in the unix port under -X heapsize=96K, through the real broker
(docs/firmware-memory.md). Short forms of what `make bench` runs at length
(bench/memory.py): a drive without a gateway, a compressed shift with outages, and the
heap filled on purpose. Nothing here is a wall-clock figure."""

import re

from bench.memory import (
    drives_without_gateway,
    fill_heap,
    growth_per_hour,
    hour_medians,
    shift,
    telemetry,
)
from bench.unit import heap_stats, live_report_bytes, run_drive, stored
from provisioning import image
from simulators.gateway_process import wait_until
from simulators.vunit import run_micropython

CAP = 96 * 1024
POOLS = 5  # the unix port's first five qstr pools hold 620 names; the sixth costs 7 KB
# what a unit loads after start, now and then: each session, its telemetry, a settings
# push, a full flash
LOADED_LATER = ("session", "mqtt_connect", "telemetry", "orders", "config", "outbox_room")


def test_a_drive_under_a_96k_heap_with_a_gateway(tmp_path, broker, gateway, unit_id):
    unit, link = run_drive(
        tmp_path, duration_s=300, presses=(3, 4, 9), broker_port=broker.port, gateway=gateway, unit_id=unit_id
    )
    st = heap_stats(unit)  # raises if the unit met a MemoryError or reset
    print(f"heap: start {st['code']} B, peak {st['peak']} B, high-water {st['high']} B")
    assert 0 < st["code"] < st["peak"] <= st["high"] < CAP
    assert [k for _, _, k in stored(gateway, unit_id)] == [3, 4, 9]
    smallest, largest = live_report_bytes(link)
    assert largest <= 64
    published = [p for p in link.packets if p.kind == "PUBLISH" and p.direction == "up"]
    published = [p for p in published if not p.topic.endswith("/tele")]  # telemetry: QoS 0
    acks = [p for p in link.packets if p.kind == "PUBACK" and p.direction == "down"]
    assert len(acks) == len(published)  # every QoS 1 message acknowledged
    # no fault injected, so one link for the whole drive (the link proxy used to cut it)
    assert len([line for line in unit.lines if line.startswith("link up")]) == 1, unit.lines


def test_drives_without_a_gateway_send_every_press_again_and_never_run_out(tmp_path, broker, unit_id):
    runs = drives_without_gateway(tmp_path, runs=2, duration_s=450, broker_port=broker.port, unit_id=unit_id)
    for st in runs:  # each: no MemoryError, no recovery, no reset (heap_stats raises)
        assert st["recovered"] == 0 and st["peak"] <= st["high"] < CAP


def test_a_compressed_shift_with_outages_keeps_every_press_and_a_flat_heap(tmp_path, broker, unit_id):
    hours = 3
    result = shift(tmp_path, hours=hours, presses=12, rate=240.0, broker_port=broker.port, unit_id=unit_id)
    assert [k for _, _, k in result["stored"]] == result["pressed"] == [3, 4] * 6
    samples = result["samples"]
    assert len(samples) >= 30
    first, last = hour_medians(samples, hours)
    slope = growth_per_hour(samples)
    print(f"heap: first hour {first} B, last hour {last} B, trend {slope:.0f} B/h")
    assert last - first <= 256  # no growth from the first hour to the last
    assert max(y for _, y in samples) < CAP


def test_a_full_heap_for_a_moment_is_recovered_from_and_no_press_is_lost(tmp_path, broker, gateway, unit_id):
    unit, pressed, got = fill_heap(tmp_path, 3000, broker.port, gateway, unit_id)
    assert [k for _, _, k in got] == pressed  # every press, once, in order
    device = gateway.unit(unit_id)["device"]
    assert device["boot"] == 0 and device["reset"] == "power_on"  # no reset
    assert telemetry(gateway, unit_id)["heap_recovered"] >= 1  # reported
    assert any("memory: allocation failed" in line for line in unit.lines)


def test_a_heap_that_stays_full_ends_in_a_clean_reset_that_says_memory(tmp_path, broker, gateway, unit_id):
    unit, pressed, got = fill_heap(tmp_path, 0, broker.port, gateway, unit_id, config={"mem_reset_s": 3})
    assert [k for _, _, k in got] == pressed  # kept on flash through the reset
    device = gateway.unit(unit_id)["device"]
    assert device["boot"] == 1 and device["reset"] == "memory"
    assert unit.resets == 1 and any("unit: reset (memory)" in line for line in unit.lines)
    assert not [line for line in unit.lines if line.startswith(">>>")]  # never at the REPL


def test_a_board_on_a_serial_port_resets_into_its_firmware_not_its_repl(tmp_path, broker, unit_id):
    # the virtual board behind a pty (what mpremote and siaga provision see) runs the
    # image's main.py; the reset main.py asks for when the heap stays full starts it
    # again (as machine.reset() does on a board), where falling out would leave the REPL
    import json

    from provisioning import image
    from simulators.vboard_serial import SerialBoard

    flash = image.build(tmp_path / "flash")
    cfg = {"unit_id": unit_id, "broker_port": broker.port, "mem_reset_s": 3, "telemetry_s": 1}
    (flash / "config.json").write_text(json.dumps(cfg))
    board = SerialBoard(unit_id, flash, tmp_path / "sim", heap="96K").start()
    try:
        wait_until(lambda: any(line.startswith("link up") for line in board.lines), 30, 0.2, "online")
        board.fill_heap(0)
        wait_until(lambda: board.boots == 2, 60, 0.2, "the firmware started again")
        wait_until(lambda: f"unit {unit_id} boot 1" in board.lines, 30, 0.2, "the next boot")
        assert board.mode == "app" and board.resets == 1
        assert "unit: reset (memory)" in board.lines
    finally:
        board.stop()


def test_the_names_a_unit_interns_fit_the_qstr_pools_it_starts_with(tmp_path):
    """Built as main.py builds it, then with all it loads later: every name it interned
    still in the first five pools (docs/firmware-memory.md, "Interned names")."""
    image.build(tmp_path)
    (tmp_path / "config.json").write_text('{"unit_id": "amb-01", "broker_port": 1}')
    main = (tmp_path / "main.py").read_text()
    assert main.rstrip().endswith("\nmain()")
    later = "".join(f"borrow({name!r})\n" for name in LOADED_LATER)
    script = (
        main.rstrip()[: -len("main()")]
        + f"unit = _build()\nfrom heap import borrow\n{later}micropython.qstr_info()\n"
    )
    (tmp_path / "names.py").write_text(script)
    env = {"SIAGA_VBOARD": "gnss=/dev/null,panel=/dev/null"}
    run = run_micropython(["names.py"], tmp_path, heap="96K", env=env)
    assert run.returncode == 0, run.stderr.decode() + run.stdout.decode()
    pools, names = map(int, re.search(rb"n_pool=(\d+), n_qstr=(\d+)", run.stdout).groups())
    print(f"qstrs: {names} in {pools} pools")
    assert pools <= POOLS, names
