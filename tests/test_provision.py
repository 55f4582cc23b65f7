"""`siaga provision` on real parts: a secure Mosquitto (TLS, dynsec), the gateway process,
and a virtual board on a serial port (simulators/vboard_serial.py: the MicroPython unix
port behind a pty, where mpremote works over the raw REPL). The whole flow: checks,
image, credentials, copy, verify by hash, registry, reboot, self-test; and each way it
can fail, leaving nothing half-done."""

import json
import os
import pty

import pytest
from conftest import GatewayProcess, wait_until

from provisioning import flash
from provisioning.broker_admin import BrokerAdmin
from siaga.cli import main as siaga
from simulators.gateway_process import make_token
from simulators.vboard_serial import SerialBoard

# 4 KB blocks: room for the image and the unit's files, and bytes enough for a second
# image, but not the blocks (littlefs gives each small file whole blocks)
LFS_ONE_IMAGE = 74  # the image: 34 files (60 KB) in 34 blocks or more; 21 blocks free after it


@pytest.fixture
def secure_gateway(secure_broker, tmp_path):
    gw = GatewayProcess(tmp_path / "gateway", secure_broker.tls_port, extra=secure_broker.gateway_flags())
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def admin(secure_broker):
    with BrokerAdmin.from_data_dir(secure_broker.data_dir) as a:
        yield a


@pytest.fixture
def boards(tmp_path):
    """Start virtual boards on serial ports: boards(name) -> SerialBoard (blank: the
    REPL waits, as on a board with MicroPython and nothing else)."""
    started = []

    def start(name="b1", **kw):
        b = SerialBoard(name, tmp_path / "boards" / name, tmp_path / "sim", seed=1, **kw).start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()
        print(f"--- serial of {b.unit_id}", bytes(b.serial_log[-3000:]).decode(errors="replace"), sep="\n")


@pytest.fixture
def provision(secure_broker, secure_gateway, tmp_path, capsys):
    """Run `siaga provision` in this process: (exit code, stdout, stderr)."""

    def run(*args):
        argv = [*args, "--yes"]
        for flag, default in (
            ("--api", secure_gateway.url),
            ("--broker-data", str(secure_broker.data_dir)),
            ("--token", secure_gateway.token),
        ):
            if flag not in args:  # a test's own wins
                argv += [flag, default]
        rc = siaga(argv)
        out, err = capsys.readouterr()
        print(out, err)  # shown when a test fails
        return rc, out, err

    yield run
    os.environ.pop("SIAGA_TOKEN", None)


def panel(board):
    return f"{board.sim_dir}:{board.unit_id}"


def flow(provision, unit_id, board, *extra):
    return provision(
        "provision",
        unit_id,
        "--kind",
        "ambulance",
        "--callsign",
        "AMBULANS 77",
        "--board",
        "virtual",
        "--port",
        board.port,
        "--panel",
        panel(board),
        *extra,
    )


def registry(gateway, unit_id):
    status, body = gateway.get(f"/api/v1/units/{unit_id}")
    return body if status == 200 else None


def test_a_blank_board_becomes_a_unit_and_passes_its_self_test(
    provision, boards, secure_gateway, admin, unit_id
):
    board = boards()
    rc, out, err = flow(provision, unit_id, board)
    assert rc == 0, err
    for n in range(1, 7):
        assert f"[{n}/6]" in out
    assert "✗" not in out and "[FAIL]" not in out
    for check in (
        "[PASS] firmware",
        "[PASS] broker",
        "[PASS] gateway",
        "[PASS] GNSS",
        "[PASS] key 6",
        "[PASS] LED 6",
    ):
        assert check in out
    assert "[N/A ] modem" in out and "self-test: PASS" in out
    assert "[N/A ] supply: n/a: the board does not measure its supply voltage" in out

    config = json.loads((board.flash / "config.json").read_text())
    assert config["unit_id"] == unit_id and config["broker_tls"] and config["broker_ca"] == "ca.crt"
    assert config["mqtt_password"] not in out + err  # the secret is never printed
    # every file of the image is on the flash, byte for byte; none left in staging
    assert not (board.flash / flash.STAGING).exists()
    assert (board.flash / "lib" / "unit.mpy").exists() and (board.flash / "ca.crt").exists()
    # the unit is registered, has credentials, and its press was stored
    unit = registry(secure_gateway, unit_id)
    assert unit["callsign"] == "AMBULANS 77" and unit["device"]["reset"] == "soft"
    assert admin.exists(unit_id)
    keys = [s["key"] for s in secure_gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]]
    assert keys == [6]
    assert board.state()["mode"] == "app" and board.boots == 1


def test_a_taken_unit_id_is_refused_until_replace(provision, boards, secure_gateway, admin, unit_id):
    board = boards()
    assert flow(provision, unit_id, board, "--no-selftest")[0] == 0
    old_password = json.loads((board.flash / "config.json").read_text())["mqtt_password"]
    other = boards("b2")
    rc, out, err = flow(provision, unit_id, other, "--no-selftest")
    assert rc == 2 and f"unit {unit_id} is already provisioned" in err and "nothing was changed" in err
    assert not (other.flash / "config.json").exists()
    # --replace on the same board: rotated, and the unit comes back with the new password
    rc, out, err = flow(provision, unit_id, board, "--replace")
    assert rc == 0, err
    new_password = json.loads((board.flash / "config.json").read_text())["mqtt_password"]
    assert new_password != old_password and "self-test: PASS" in out


def test_move_puts_the_identity_on_new_hardware_and_the_old_board_is_refused(
    provision, boards, secure_gateway, admin, unit_id
):
    old = boards("old")
    assert flow(provision, unit_id, old)[0] == 0
    boot_before = registry(secure_gateway, unit_id)["device"]["boot"]
    new = boards("new")
    rc, out, err = provision(
        "unit", "move", unit_id, "--board", "virtual", "--port", new.port, "--panel", panel(new)
    )
    assert rc == 0, err
    assert "self-test: PASS" in out
    # the old hardware still runs the old password: the broker refuses it
    wait_until(
        lambda: any("not authori" in line.lower() or "refused" in line.lower() for line in old.lines),
        timeout=60,
        what="the old board refused by the broker",
    )
    # the new board carries the boot counter on: (unit, boot, seq) does not repeat
    assert registry(secure_gateway, unit_id)["device"]["boot"] > boot_before
    assert [s["key"] for s in secure_gateway.get(f"/api/v1/units/{unit_id}/statuses")[1]] == [6, 6]


def test_a_wrong_port_is_a_clear_error_and_changes_nothing(
    provision, secure_gateway, admin, unit_id, tmp_path
):
    rc, out, err = provision("provision", unit_id, "--board", "virtual", "--port", str(tmp_path / "ttyUSB9"))
    assert rc == 2 and "no serial port" in err
    assert registry(secure_gateway, unit_id) is None and not admin.exists(unit_id)


def test_a_board_that_does_not_answer_gets_the_esptool_steps(provision, secure_gateway, admin, unit_id):
    master, slave = pty.openpty()  # a serial port with nothing behind it: a blank ESP32
    try:
        port = os.ttyname(slave)
        rc, out, err = provision(
            "provision", unit_id, "--board", "esp32s3-sim7600-m8n/1", "--port", port, "--no-selftest"
        )
    finally:
        os.close(master)
        os.close(slave)
    assert rc == 2 and "does not answer as MicroPython" in err
    assert f"esptool --chip esp32s3 --port {port} erase-flash" in err
    assert f"esptool --chip esp32s3 --port {port} write-flash -z 0 ESP32_GENERIC_S3" in err
    assert registry(secure_gateway, unit_id) is None and not admin.exists(unit_id)


def test_the_blank_flag_prints_the_esptool_steps(provision, unit_id):
    rc, out, _ = provision(
        "provision", unit_id, "--board", "esp32-ec25/1", "--port", "/dev/ttyUSB0", "--blank"
    )
    assert rc == 1
    assert "esptool --chip esp32 --port /dev/ttyUSB0 write-flash -z 0x1000 ESP32_GENERIC" in out


def test_an_unreachable_broker_changes_nothing(
    provision, boards, secure_broker, secure_gateway, unit_id, tmp_path
):
    board = boards()
    fake = tmp_path / "broker-copy"
    fake.mkdir()
    info = json.loads((secure_broker.data_dir / "broker.json").read_text())
    from provisioning.processes import free_port

    (fake / "broker.json").write_text(json.dumps(dict(info, tls_port=free_port())))  # nobody listens
    (fake / "admin.password").write_text((secure_broker.data_dir / "admin.password").read_text())
    rc, out, err = provision(
        "provision",
        unit_id,
        "--board",
        "virtual",
        "--port",
        board.port,
        "--broker-data",
        str(fake),
    )
    assert rc == 2 and "broker" in err and "nothing was changed" in err
    assert registry(secure_gateway, unit_id) is None
    assert not (board.flash / "config.json").exists()


def test_a_full_flash_undoes_the_credentials_and_keeps_the_old_files(
    provision, boards, secure_gateway, admin, unit_id
):
    # a real littlefs of 24 blocks of 4 KB: 88 KB free passes the byte check, but each
    # file takes whole blocks, and the copy runs into ENOSPC halfway
    board = boards(lfs_blocks=24)
    with flash.BoardLink(board.port) as link:
        link.t.fs_writefile("main.py", b"print('old firmware')\n")
    rc, out, err = flow(provision, unit_id, board)
    assert rc == 2 and "the board's flash is full" in err and "nothing was changed on it" in err
    assert "undone: broker client" in out
    assert not admin.exists(unit_id) and registry(secure_gateway, unit_id) is None
    with flash.BoardLink(board.port) as link:
        assert link.read("main.py") == b"print('old firmware')\n"
        assert link.read("config.json") is None
        assert link.run("import os\nprint(repr(sorted(os.listdir())))") == ["host", "main.py"]


def test_a_refused_registry_entry_undoes_the_credentials_and_keeps_the_old_files(
    provision, boards, secure_gateway, admin, unit_id
):
    # the copy has gone through and been verified, then the gateway refuses the unit (a
    # viewer's token reads the registry but may not change it): the board must not be
    # left with a config whose broker login was just undone
    board = boards()
    with flash.BoardLink(board.port) as link:
        link.t.fs_writefile("main.py", b"print('old firmware')\n")
    viewer = make_token(secure_gateway.data_dir, "viewer", "wallboard")
    rc, out, err = flow(provision, unit_id, board, "--token", viewer)
    assert rc == 2 and "needs the" in err and "you are a viewer" in err, err
    assert "[4/6] copy" in out and "✓" in out.split("[4/6]")[1].splitlines()[0]
    assert "[5/6] registry" in out and "✗" in out.split("[5/6]")[1].splitlines()[0]
    assert "undone: the copy discarded" in out and "undone: broker client" in out
    assert not admin.exists(unit_id) and registry(secure_gateway, unit_id) is None
    with flash.BoardLink(board.port) as link:
        assert link.read("main.py") == b"print('old firmware')\n"
        assert link.read("config.json") is None
        assert link.run("import os\nprint(repr(sorted(os.listdir())))") == ["main.py"]  # no staging


def test_a_flash_too_small_for_the_image_is_refused_before_any_change(
    provision, boards, secure_gateway, admin, unit_id
):
    board = boards(lfs_blocks=8)
    rc, out, err = flow(provision, unit_id, board)
    assert rc == 2 and "the image needs" in err and "nothing was changed" in err
    assert not admin.exists(unit_id) and registry(secure_gateway, unit_id) is None


def test_a_batch_goes_on_after_a_failed_unit(provision, boards, secure_gateway, admin, unit_id, tmp_path):
    board = boards()
    batch = tmp_path / "units.csv"
    batch.write_text(
        "unit_id,port,kind,callsign,board\n"
        f"{unit_id}a,{tmp_path / 'ttyUSB9'},ambulance,AMBULANS 91,virtual\n"
        f"{unit_id}b,{board.port},fire_truck,DAMKAR 92,virtual\n"
    )
    rc, out, err = provision("provision", "--batch", str(batch), "--no-selftest")
    assert rc == 1 and "batch: 1 of 2 provisioned; failed: " + unit_id + "a" in out
    assert "no serial port" in err
    assert registry(secure_gateway, unit_id + "a") is None and not admin.exists(unit_id + "a")
    assert registry(secure_gateway, unit_id + "b")["callsign"] == "DAMKAR 92" and admin.exists(unit_id + "b")


def test_an_unreachable_gateway_changes_nothing(provision, boards, admin, unit_id):
    from provisioning.processes import free_port

    board = boards()
    rc, out, err = provision(
        "provision",
        unit_id,
        "--board",
        "virtual",
        "--port",
        board.port,
        "--api",
        f"http://127.0.0.1:{free_port()}",
    )
    assert rc == 2 and "the gateway" in err and "nothing was changed" in err
    assert not admin.exists(unit_id) and not (board.flash / "config.json").exists()


def test_an_old_micropython_is_refused_with_its_version(boards):
    board = boards()
    with flash.BoardLink(board.port) as link:
        assert link.check()["version"] == ".".join(map(str, link.info()[1]))
        with pytest.raises(
            flash.TooOld, match=r"the board runs MicroPython 1\.\d+\.\d+; Siaga needs 99\.0\.0"
        ):
            link.check(minimum=(99, 0, 0))


def test_the_self_test_checks_the_modem_when_the_board_has_one(provision, boards, unit_id):
    from simulators.modem import ModemSimulator

    modem = ModemSimulator(model="SIM7600", csq=20, operator="Telkomsel").start()
    try:
        # the modem driver's bytecode and TLS both take heap in the unix port (docs/operations.md)
        board = boards(modem=modem, heap="192K", supply_v=27.6)  # a 24 V fire truck, charging
        rc, out, err = flow(provision, unit_id, board)
    finally:
        modem.stop()
    assert rc == 0, err
    assert "[PASS] modem: answers and registered (home), signal -73 dBm" in out  # CSQ 20
    assert "[PASS] supply: 27.6 V" in out


def test_a_supply_reading_the_unit_cannot_run_on_fails_the_self_test(provision, boards, unit_id):
    board = boards(supply_v=3.1)  # e.g. the 15 kΩ fitted where the 220 kΩ belongs
    rc, out, err = flow(provision, unit_id, board)
    assert rc == 1
    assert "[FAIL] supply: 3.1 V, outside 9.0-32.0 V while the unit runs" in out
    assert "self-test: FAIL (supply)" in out


def test_a_failed_replace_puts_the_old_password_back_and_the_unit_runs_on(
    provision, boards, secure_gateway, admin, unit_id
):
    # room for one image and the unit's files, not for a second one staged beside it
    board = boards(lfs_blocks=LFS_ONE_IMAGE)
    assert flow(provision, unit_id, board, "--no-selftest")[0] == 0

    def device():
        return registry(secure_gateway, unit_id)["device"] or {}

    wait_until(lambda: device().get("boot") is not None, what="the unit's birth")
    first = device()["boot"]
    rc, out, err = flow(provision, unit_id, board, "--replace")
    assert rc == 2 and "the board's flash is full" in err, out
    assert "undone: the old password put back" in out and "restarted on its old files" in out
    # the board runs its old firmware with its old password, which the broker takes again
    wait_until(
        lambda: device().get("boot") == first + 1,
        timeout=30,
        what="the unit back online on its old files",
    )


def test_a_board_becomes_a_unit_on_the_nats_cluster_and_the_unit_commands_reach_it(
    nats_cluster, boards, tmp_path, capsys, unit_id
):
    """The same flow with the NATS cluster's data folder (open_admin picks its admin): the
    unit gets its own login (and every node: tests/test_broker_list.py), its self-test's
    press reaches a gateway on the cluster; a failed replace puts the old password back through set_password;
    decommission and enable reach the cluster."""
    gw = GatewayProcess(tmp_path / "gateway", nats_cluster.tls_port, extra=nats_cluster.gateway_flags())
    gw.start()
    common = ["--api", gw.url, "--broker-data", str(nats_cluster.data_dir), "--token", gw.token]

    def run(*args):
        rc = siaga([*args, *common])
        out, err = capsys.readouterr()
        print(out, err)
        return rc, out, err

    try:
        board = boards(lfs_blocks=LFS_ONE_IMAGE)
        provision = ("provision", unit_id, "--kind", "ambulance", "--board", "virtual", "--yes")
        rc, out, err = run(*provision, "--port", board.port, "--panel", panel(board))
        assert rc == 0 and "self-test: PASS" in out, err
        assert [s["key"] for s in gw.get(f"/api/v1/units/{unit_id}/statuses")[1]] == [6]
        with nats_cluster.admin() as admin:
            assert admin.is_enabled(unit_id)
            users = json.loads(admin.users_path.read_text())["units"]
            hashed = users[unit_id]["hash"]
            # no room for a second image: the replace fails and its undo sets the old password
            rc, out, err = run(*provision, "--port", board.port, "--panel", panel(board), "--replace")
            assert rc == 2 and "undone: the old password put back" in out, out + err
            users = json.loads(admin.users_path.read_text())["units"]
            assert users[unit_id]["hash"] != hashed  # a hash of the old password, made again
            boot = gw.unit(unit_id)["device"]["boot"]
            wait_until(
                lambda: gw.unit(unit_id)["device"]["boot"] == boot + 1, 30, what="back on its old password"
            )
            assert run("unit", "decommission", unit_id)[0] == 0 and not admin.is_enabled(unit_id)
            assert run("unit", "enable", unit_id)[0] == 0 and admin.is_enabled(unit_id)
    finally:
        gw.stop()
