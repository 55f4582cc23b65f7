"""`siaga provision`: a blank board (with MicroPython) becomes a working unit.

    1. check     the gateway, the broker and the board answer; the board's MicroPython
                 is recent enough and its flash can hold the image. Nothing changes yet.
    2. image     the firmware compiled with mpy-cross, the board definitions, config.json
                 (identity, broker, TLS with the project CA, the password) and ca.crt
    3. broker    the unit's credentials and ACL (dynsec: its own topics only)
    4. copy      onto the board with mpremote, every file verified by its SHA-256
    5. registry  the unit in the gateway's registry
    6. reboot    and the self-test (provisioning/selftest.py)

Nothing is left half-done: steps 1 and 2 change nothing; a failure in 4 or 5 undoes 3
(the client removed if this run created it, the old password put back if the board
had it) and leaves the board's old files: step 4 copies into a staging folder on the
board and verifies it there, and the staged files are put in place (a rename each,
atomic on littlefs) only once the registry has taken the unit in step 5; a failure
before that discards the staging folder. The registry entry is made after the copy,
since the API has no delete: a run that fails never leaves a unit registered that has
no credentials or no firmware, nor a board whose config names credentials that were
undone. A
failed self-test undoes nothing: the unit is provisioned and the checklist says what
to look at. Secrets are never printed: the password goes only into the board's
config.json, through a 0700 temporary folder that is removed at the end.
"""

import json
import shutil
import tempfile
from pathlib import Path

from gateway.centre import UNIT_KINDS
from gateway.client import Client
from gateway.errors import SiagaError

from . import flash, image
from .broker_admin import BrokerAdminError, check_unit_id, open_admin

BOARDS = image.boards()  # the firmware's own list, and "virtual"
DATA_FILES = ("settings.json", "config.good.json", "ob")  # another identity's, on a reused board
OK, FAIL = "✓", "✗"


class ProvisionError(SiagaError):
    code = "provision"


class UnitTaken(ProvisionError):
    code = "unit_exists"


def check_broker_host(value):
    """`value` if the firmware takes it as broker_host (firmware/lib/config.py): a host,
    or a cluster's nodes, comma-separated, each `host` or `host:port`; else ProvisionError."""
    for node in value.split(","):
        host, colon, port = node.strip().partition(":")
        if not host or colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise ProvisionError(
                f"broker host {node!r}: give host or host:port, comma-separated (n1:8883,n2:8883)"
            )
    return value


class Provisioner:
    """One run of `siaga provision` (or `move`); `run()` returns True when the unit is
    provisioned and its self-test passed."""

    def __init__(
        self,
        unit_id,
        port,
        board,
        broker_data,
        api,
        kind="ambulance",
        callsign=None,
        agency="",
        token=None,
        replace=False,
        move=False,
        broker_host=None,
        panel=None,
        selftest=True,
        progress=True,
        out=print,
    ):
        self.unit_id = check_unit_id(unit_id)
        self.port = port
        self.board = board
        self.broker_data = Path(broker_data)
        self.api = api.rstrip("/")
        self.kind = kind
        self.callsign = callsign or unit_id.upper()
        self.agency = agency
        self.token = token
        self.client = Client(self.api, token)
        self.replace = replace or move
        self.move = move
        self.broker_host = broker_host
        self.panel = panel  # presses the test key and reads its LED (selftest.TechnicianPanel)
        self.selftest = selftest
        self.progress = progress  # the copy's progress bar (on stderr)
        self.out = out
        self.undo = []  # (what, function), undone last first
        self.checks = []

    def step(self, n, text, mark=OK):
        self.out(f"[{n}/6] {text} {mark}")

    # the run
    def run(self):
        if self.board not in BOARDS:
            raise ProvisionError(f"unknown board {self.board!r} (known: {', '.join(BOARDS)})")
        if self.kind not in UNIT_KINDS:
            raise ProvisionError(f"unknown kind {self.kind!r} (known: {', '.join(UNIT_KINDS)})")
        work = Path(tempfile.mkdtemp(prefix="siaga-image-"))  # 0700: the password goes in here
        try:
            with self._admin() as admin, flash.BoardLink(self.port) as link:
                self.admin = admin
                try:
                    self._provision(work, link)
                except BaseException:
                    self._restart(link)
                    raise
                self.step(6, f"reboot: {self.port}")
                link.reboot()
                return self._selftest(link)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _provision(self, work, link):
        facts = self._check(link)
        files = self._image(work, facts)
        try:
            self._credentials(files, facts)
            self._copy(link, files)
            self._register()
            self._put_in_place(link, files, facts)
        except BaseException:
            self._undo()
            raise

    def _restart(self, link):
        """After a failure the board runs what it ran before (mpremote stopped it)."""
        try:
            link.reboot()
            self.out(f"  the board on {self.port} restarted on its old files")
        except Exception:  # noqa: BLE001 (the board may be gone: the error that matters is raised)
            pass

    def _admin(self):
        try:
            return open_admin(self.broker_data).connect()  # Mosquitto's or the NATS cluster's
        except BrokerAdminError as e:
            raise ProvisionError(f"step 1: the broker: {e.message}; nothing was changed") from None

    def _check(self, link):
        """Step 1: what is there already, and whether the run may go on. No changes."""
        try:
            registered = self._registry_entry()
        except SiagaError as e:
            raise ProvisionError(f"step 1: the gateway: {e.message}; nothing was changed") from None
        has_credentials = self.admin.exists(self.unit_id)
        if registered and has_credentials and not self.replace:
            raise UnitTaken(
                f"unit {self.unit_id} is already provisioned (registered, with broker credentials): "
                "give --replace to provision it again on this board, or use `siaga unit move` for new "
                "hardware; nothing was changed"
            )
        try:
            board = link.check()
        except flash.TooOld as e:
            raise ProvisionError(f"step 1: {e.message}; nothing was changed") from None
        old = self._board_config(link)
        self.step(
            1,
            f"check: gateway {self.api}, broker {self.admin.host}:{self.admin.port}, "
            f"board on {self.port}: MicroPython {board['version']} ({board['platform']})",
        )
        return {"registered": registered, "credentials": has_credentials, "board": board, "old": old}

    def _registry_entry(self):
        try:
            return self.client.get(f"/api/v1/units/{self.unit_id}")
        except SiagaError as e:
            if " 404 " in e.message:
                return None
            raise

    @staticmethod
    def _board_config(link):
        raw = link.read("config.json")
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def _broker_info(self):
        """(broker_host, broker_port, CA file) of the unit's config.json. broker_host: the
        --broker-host given (a host, or a cluster's nodes "n1:8883,n2:8883"), else every
        node broker.json lists (a cluster's `addresses`), else its one host; broker_port:
        the port of a host given without one."""
        info = json.loads((self.broker_data / "broker.json").read_text())
        nodes = ",".join(f"{host}:{port}" for host, port in info.get("addresses") or ())
        host = check_broker_host(self.broker_host or nodes or info["host"])
        return host, info["tls_port"], Path(info["cafile"])

    def _image(self, work, facts):
        """Step 2: the firmware image with this unit's config (password filled in at step 3)."""
        out = image.build(work / "image")
        host, port, cafile = self._broker_info()
        shutil.copyfile(cafile, out / "ca.crt")
        self.config = {
            "unit_id": self.unit_id,
            "board": "" if self.board == "virtual" else self.board,
            "broker_host": host,
            "broker_port": port,
            "broker_tls": True,
            "broker_ca": "ca.crt",
        }
        device = (facts["registered"] or {}).get("device") or {}
        if facts["old"].get("unit_id") != self.unit_id and device.get("boot") is not None:
            # new hardware for a known identity: its boot counter goes on from the last one
            # the gateway saw, so (unit, boot, seq) never repeats and nothing is taken for a
            # duplicate
            (out / "boot.txt").write_text(str(device["boot"]))
        files = flash.image_files(out)
        size = sum(map(len, files.values()))
        free = facts["board"]["free"]
        if 0 <= free < size + flash.SLACK:
            raise flash.NoSpace(
                f"step 2: the board's flash has {free} bytes free, the image needs {size + flash.SLACK}; "
                "nothing was changed"
            )
        self.step(
            2,
            f"image: {len(files)} files, {size / 1024:.0f} KB (firmware, boards, ca.crt; config.json next)",
        )
        return files

    def _credentials(self, files, facts):
        """Step 3: the unit's broker client; its password only into config.json."""
        uid = self.unit_id
        if facts["credentials"]:
            password = self.admin.rotate(uid)
            old = facts["old"]
            if old.get("unit_id") == uid and old.get("mqtt_password"):
                self.undo.append(
                    ("the old password put back", lambda: self._set_password(old["mqtt_password"]))
                )
            else:
                self.undo.append(("credentials stay rotated (the old password is not known here)", None))
            what = "new password (the old one is refused from now on)"
        else:
            password = self.admin.add_unit(uid)
            self.undo.append((f"broker client {uid} removed", lambda: self.admin.remove(uid)))
            what = (
                f"client {uid}, role unit-{uid}: publish siaga/{uid}/pos|status|conn|tele,"
                f" read siaga/{uid}/down"
            )
        files["config.json"] = json.dumps(dict(self.config, mqtt_password=password), indent=1).encode()
        self.step(3, f"broker: {what}")

    def _set_password(self, password):
        self.admin.set_password(self.unit_id, password)

    def _copy(self, link, files):
        """Step 4: into the board's staging folder, verified there; the board still runs
        its old files."""
        try:
            link.stage(files, progress=self.progress)
        except flash.FlashError as e:
            self.step(4, f"copy to {self.port}: {e.message}", FAIL)
            raise
        self.undo.append(("the copy discarded: the board keeps its old files", link.discard))
        self.step(4, f"copy to {self.port}: {len(files)} files, each verified by SHA-256 read back")

    def _register(self):
        """Step 5: the registry entry (create, or update the fields given)."""
        body = {"unit_id": self.unit_id, "kind": self.kind, "callsign": self.callsign, "agency": self.agency}
        try:
            self.client.post("/api/v1/units", body)
            if self.replace:  # new credentials or hardware: what came before holds nothing back
                self.client.post(f"/api/v1/units/{self.unit_id}/reset-counters")
        except SiagaError as e:
            self.step(5, f"registry: {e.message}", FAIL)
            raise
        self.step(5, f"registry: {self.unit_id} {self.callsign} ({self.kind})")

    def _put_in_place(self, link, files, facts):
        """The staged image over the old files, verified again; another identity's data
        and modules the image no longer has removed."""
        link.put_in_place(files)
        stale = link.remove_stale(image.SOURCE_DIRS, files)
        if facts["old"].get("unit_id") not in (None, self.unit_id):
            link.remove(DATA_FILES)
        self.out(
            f"  files in place on {self.port}, verified again"
            + (f"; {len(stale)} old module(s) removed" if stale else "")
        )

    def _undo(self):
        for what, fn in reversed(self.undo):
            try:
                if fn is not None:
                    fn()
                self.out(f"  undone: {what}")
            except SiagaError as e:
                self.out(f"  NOT undone: {what}: {e.message}")
        self.undo.clear()

    def _selftest(self, link):
        if not self.selftest:
            self.out("self-test skipped (--no-selftest)")
            return True
        from .selftest import Console, SelfTest, print_summary

        test = SelfTest(
            self.unit_id,
            self.port,
            self.api,
            token=self.token,
            panel=self.panel,
            virtual=self.board == "virtual",
        )
        console = Console(self.port, link.t.serial).start()  # what it printed since the reboot
        try:
            self.checks = test.run(console, out=self.out)
        finally:
            console.close()
        return print_summary(self.checks, self.out)
