"""The firmware's modem driver (firmware/lib/modem.py), run in the MicroPython unix port
against the modem simulator on a pty (simulators/modem.py), for both modem models.
tests/firmware/modem_scenario.py is the firmware side: one scenario per run, one JSON
line per step."""

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from simulators.modem import ModemSimulator
from simulators.vunit import micropython_bin

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "firmware" / "modem_scenario.py"
MODELS = ["SIM7600", "EC25"]


@pytest.fixture
def simulator():
    sims = []

    def start(model, **config):
        sim = ModemSimulator(model=model, guard_s=0.1, **config).start()
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()


def run(sim, scenario, *args, cwd, on_step=None, timeout=10):
    """Run a scenario against `sim`; returns its steps by name ("error" for a ModemError)."""
    env = dict(
        os.environ,
        MICROPYPATH=f".frozen:{REPO / 'firmware' / 'lib'}:{REPO / 'firmware'}",
        SIAGA_MODEM=sim.path,
        SIAGA_MODEM_MODEL=sim.model,
    )
    proc = subprocess.Popen(
        [micropython_bin(), "-X", "heapsize=128K", str(SCRIPT), scenario, *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    steps, other = {}, []
    try:
        for line in proc.stdout:
            try:
                step = json.loads(line)
            except ValueError:
                other.append(line)
                continue
            name = step.pop("step", "error")
            steps[name] = step
            if on_step is not None:
                on_step(name, step)
    finally:
        timer.cancel()
        proc.wait()
    assert proc.returncode == 0 and not other, "".join(other)
    return steps


def reg_reads(sim):
    return sum(1 for c in sim.commands if c in ("AT+CREG?", "AT+CGREG?", "AT+CEREG?"))


@pytest.mark.parametrize("model", MODELS)
def test_start_register_signal_apn_data_and_hangup(simulator, model, tmp_path):
    sim = simulator(model, csq=20)
    steps = run(sim, "normal", cwd=tmp_path)
    assert "error" not in steps, steps
    assert steps["start"]["sim"] == "READY"
    assert steps["start"]["model"] == {"SIM7600": "SIM7600E-H", "EC25": "EC25"}[model]
    assert steps["register"]["reg"] == "home"
    assert steps["signal"]["rssi_dbm"] == -73 and steps["signal"]["ber"] is None
    assert sim.apn == "internet"
    assert steps["connect"] == {"line": "CONNECT 150000000", "state": "data"}
    assert steps["hangup"]["state"] == "command" and sim.call is None
    telemetry = steps["telemetry"]
    assert telemetry["reg"] == "home" and telemetry["operator"] == "Telkomsel" and telemetry["act"] == "lte"
    assert telemetry["rssi_dbm"] == -73 and telemetry["losses"] == 0
    assert "ATE0" in sim.commands and "ATD*99#" in sim.commands and "ATH" in sim.commands
    if model == "EC25":  # its own GNSS, started at each power-up (hardware/esp32-ec25.md)
        assert steps["start"]["gnss"] == "on" and sim.gnss
        assert 'AT+QICSGP=1,1,"internet","user","secret",1' in sim.commands
    else:
        assert steps["start"]["gnss"] is None and "AT+QGPS=1" not in sim.commands
        assert sim.auth == ["1", "1", "secret", "user"]


@pytest.mark.parametrize("model", MODELS)
def test_no_sim_is_a_clear_error(simulator, model, tmp_path):
    steps = run(simulator(model, sim="absent"), "start", cwd=tmp_path)
    assert steps["error"] == {"error": "no_sim", "detail": 10}


@pytest.mark.parametrize("model", MODELS)
def test_a_required_pin_is_sent_once(simulator, model, tmp_path):
    sim = simulator(model, sim="pin", pin="2468")
    steps = run(sim, "start", "2468", cwd=tmp_path)
    assert steps["start"]["sim"] == "READY"
    assert sim.commands.count('AT+CPIN="2468"') == 1


@pytest.mark.parametrize("model", MODELS)
def test_a_wrong_pin_is_an_error_and_never_retried(simulator, model, tmp_path):
    sim = simulator(model, sim="pin", pin="2468")
    steps = run(sim, "start", "1111", cwd=tmp_path)
    assert steps["error"] == {"error": "pin_wrong", "detail": 16}
    assert sim.pin_attempts == 1  # three wrong PINs would lock the SIM


@pytest.mark.parametrize("model", MODELS)
def test_a_pin_required_without_one_configured(simulator, model, tmp_path):
    sim = simulator(model, sim="pin")
    steps = run(sim, "start", cwd=tmp_path)
    assert steps["error"]["error"] == "pin_required"
    assert sim.pin_attempts == 0


@pytest.mark.parametrize("model", MODELS)
def test_registration_denied(simulator, model, tmp_path):
    steps = run(simulator(model, reg="denied"), "register", cwd=tmp_path)
    assert steps["error"]["error"] == "registration_denied"


@pytest.mark.parametrize("model,reg", [("SIM7600", "home"), ("EC25", "roaming")])
def test_searching_then_registered(simulator, model, reg, tmp_path):
    sim = simulator(model, reg=reg, searching_polls=4)
    steps = run(sim, "register", cwd=tmp_path)
    assert steps["register"]["reg"] == reg
    assert reg_reads(sim) >= 4 * 3  # every domain answered "searching" 4 times first


@pytest.mark.parametrize("model", MODELS)
def test_error_answers_are_handled(simulator, model, tmp_path):
    # a domain the modem does not know (ERROR), no operator (+CME ERROR: 30), an unknown
    # command: each is an answer, not a fault, and the driver goes on
    sim = simulator(model, errors={"+CGREG": "ERROR", "+COPS": "+CME ERROR: 30"})
    steps = run(sim, "errors", cwd=tmp_path)
    assert steps["register"]["reg"] == "home"
    assert steps["bogus"] == {"error": "error", "detail": "AT+BOGUS"}
    assert steps["telemetry"]["operator"] is None and steps["telemetry"]["rssi_dbm"] == -73
    assert sim.commands.count("AT+CGREG?") == 1  # not asked again once refused


@pytest.mark.parametrize("model", MODELS)
def test_a_drop_mid_session_is_detected_and_recovered(simulator, model, tmp_path):
    sim = simulator(model)
    before = {}

    def on_step(name, step):
        if name == "connected":
            before.update(dials=sim.commands.count("ATD*99#"), reads=reg_reads(sim))
            sim.drop(searching_polls=3)

    steps = run(sim, "drop", cwd=tmp_path, on_step=on_step)
    recovered = steps["recovered"]
    assert recovered["events"] == [["lost", "no_carrier"], ["up", "home"]]
    assert recovered["state"] == "data" and recovered["losses"] == 1
    assert sim.call == "ppp" and sim.commands.count("ATD*99#") == before["dials"] + 1
    assert reg_reads(sim) - before["reads"] >= 3 * 3  # re-registered through "searching"


@pytest.mark.parametrize("model", MODELS)
def test_a_drop_without_a_session_is_seen_in_registration_urcs(simulator, model, tmp_path):
    sim = simulator(model)

    def on_step(name, step):
        if name == "connected":
            sim.drop(searching_polls=2)

    steps = run(sim, "drop", "idle", cwd=tmp_path, on_step=on_step)
    recovered = steps["recovered"]
    assert recovered["events"] == [["lost", "deregistered"], ["up", "home"]]
    assert recovered["state"] == "command" and "ATD*99#" not in sim.commands


@pytest.mark.parametrize("model", MODELS)
def test_a_modem_gone_silent_fails_polls_and_is_restarted(simulator, model, tmp_path):
    sim = simulator(model)

    def on_step(name, step):
        if name != "watching":
            return
        sim.mute = True  # answers nothing until the driver resets it
        deadline = time.monotonic() + 5
        while "AT+CFUN=1,1" not in sim.commands and time.monotonic() < deadline:
            time.sleep(0.02)
        sim.mute = False

    steps = run(sim, "silence", cwd=tmp_path, on_step=on_step)
    assert steps["recovered"]["events"] == [["lost", "poll_timeout"], ["up", "home"]]
    assert "AT+CFUN=1,1" in sim.commands  # after `restart_after` failed recoveries
    assert sim.commands.count("ATE0") == 2  # set up again after the reset


@pytest.mark.parametrize("model", MODELS)
def test_a_modem_that_never_answers_times_out(simulator, model, tmp_path):
    started = time.monotonic()
    steps = run(simulator(model, mute=True), "silent", cwd=tmp_path)
    assert steps["error"] == {"error": "timeout", "detail": "AT"}
    assert 600 <= steps["waited"]["ms"] < 2000 and time.monotonic() - started < 5


@pytest.fixture
def echo_server():
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize("model", MODELS)
def test_tcp_on_the_modems_own_stack(simulator, echo_server, model, tmp_path):
    sim = simulator(model)
    steps = run(sim, "tcp", "127.0.0.1", echo_server, cwd=tmp_path)
    assert steps["echo"] == {"line": "ping over the modem", "state": "data"}
    assert steps["hangup"]["state"] == "command" and sim.sock is None and not sim.net_open
    assert steps["signal"]["rssi_dbm"] == -73  # back in command mode


def test_the_simulator_escapes_only_after_guard_times(simulator):
    sim = simulator("SIM7600", boot=False)
    fd = os.open(sim.path, os.O_RDWR | os.O_NOCTTY)
    try:

        def talk(data, wait):
            os.write(fd, data)
            time.sleep(wait)
            return os.read(fd, 4096)

        assert talk(b'ATE0\rAT+CGDCONT=1,"IP","internet"\rATD*99#\r', 0.3).endswith(b"CONNECT 150000000\r\n")
        assert talk(b"x+++", 0.3) == b""  # no guard time before it: data
        time.sleep(0.15)
        assert talk(b"+++", 0.3) == b"\r\nOK\r\n"
        assert talk(b"ATH\r", 0.1) == b"\r\nOK\r\n" and sim.call is None
    finally:
        os.close(fd)
