"""A virtual unit: the real firmware in the MicroPython unix port, with its hardware
simulated over pseudo-terminals that speak the real protocols.

    route ──> Receiver ──NMEA bytes──> gnss pty ──> firmware (boards/virtual.py)
    press ──> "K 3 1" / "K 3 0" ─────> panel pty <──> "L 3 blink", "B 1" ──> leds, buzzer

A control socket (<sim dir>/<unit>.sock, JSON lines) lets `siaga sim press` and tests
press keys and read the LEDs. The unit's flash is a folder: the firmware image
(main.py, lib/ and boards/ compiled with mpy-cross), config.json, the boot counter.
Killing the process with SIGKILL is a power cut (the firmware dies with it); starting it
again is a reboot.
"""

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from provisioning import image
from provisioning.processes import die_with_parent

from .nmea import Receiver
from .ptys import raw_pty
from .roaddrive import RoadMover
from .route import Mover

log = logging.getLogger("siaga.sim")

REPO = Path(__file__).resolve().parent.parent
HEAP = "128K"
# The firmware's exit code for machine.reset(), which the unix port lacks (firmware/main.py):
# the virtual board starts it again, as a board restarts after a reset (cause: a hard
# reset, which the firmware reports as "crash" unless it noted why on its flash).
RESET_EXIT = 75


def micropython_bin():
    path = Path(sys.executable).parent / "micropython"
    return str(path) if path.exists() else "micropython"


def run_micropython(args, cwd, heap=HEAP, path=(), env=None, stdin=None, timeout=120):
    """Run a script in the MicroPython unix port with a capped heap; `path` goes on
    MICROPYPATH after the frozen modules. Returns the CompletedProcess (bytes)."""
    full_env = dict(os.environ, MICROPYPATH=":".join([".frozen", *map(str, path)]), **(env or {}))
    return subprocess.run(
        [micropython_bin(), "-X", f"heapsize={heap}", *map(str, args)],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )


def power_cut_with_parent():
    """In a board's process: SIGKILL (a power cut) when whatever started it dies."""
    die_with_parent(signal.SIGKILL)


class VirtualUnit:
    def __init__(
        self,
        unit_id,
        flash,
        sim_dir,
        broker=("127.0.0.1", 1883),
        heap=HEAP,
        start_xy=(0.0, 0.0),
        seed=None,
        config=None,
        echo=False,
        flash_firmware=True,
        watchdog_s=30.0,
        password=None,
        ca=None,
        flash_blocks=None,
        modem=None,
        supply_v=None,
        roads=None,
    ):
        """`password` and `ca` (the project CA's certificate, copied to the flash as
        ca.crt): the unit logs in as itself over TLS, as a provisioned unit does.
        `supply_v`: the vehicle's supply voltage the board measures (None: it cannot).
        `roads`: a road graph (gateway.roads) the unit drives on; None: the street grid of
        simulators.route."""
        self.unit_id = unit_id
        self.password = password
        self.ca = ca
        self.flash = Path(flash)
        self.sim_dir = Path(sim_dir)
        self.broker = broker
        self.heap = heap
        self.config = dict(config or {})
        self.echo = echo
        self.flash_firmware = flash_firmware
        self.watchdog_s = watchdog_s
        self.flash_blocks = flash_blocks  # the journal on a littlefs of this many 4 KB blocks
        self.modem = modem  # a started simulators.modem.ModemSimulator: the unit's LTE modem
        self.supply_v = supply_v
        self.resets = 0
        self.rng = random.Random(seed)
        if roads is not None:
            self.mover = RoadMover(roads, *start_xy, t=time.time(), rng=self.rng)
        else:
            self.mover = Mover(*start_xy, t=time.time(), rng=self.rng)
        self.receiver = Receiver(seed=seed)
        self.leds = {}
        self.buzzer = False
        self.panel_log = []
        self.lines = []  # the firmware's console output (the last 500 lines)
        self.on_line = None  # called with each console line as it comes (soak tests)
        self.proc = None
        self.stopped = threading.Event()
        self._panel_lock = threading.Lock()

    @property
    def control_path(self):
        return self.sim_dir / f"{self.unit_id}.sock"

    def write_config(self):
        """What provisioning writes to a real unit's flash (here: broker and identity)."""
        self.flash.mkdir(parents=True, exist_ok=True)
        path = self.flash / "config.json"
        cfg = json.loads(path.read_text()) if path.exists() else {}
        cfg.update(self.config, unit_id=self.unit_id, broker_host=self.broker[0], broker_port=self.broker[1])
        if self.password is not None:
            cfg["mqtt_password"] = self.password
        if self.ca is not None:
            shutil.copyfile(self.ca, self.flash / "ca.crt")
            cfg.update(broker_tls=True, broker_ca="ca.crt")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg, indent=1))
        tmp.replace(path)

    def start(self):
        self.write_config()
        if self.flash_firmware:
            image.build(self.flash)  # as if flashed: main.py, lib/*.mpy, boards/*.mpy
        self.sim_dir.mkdir(parents=True, exist_ok=True)
        self._open_hardware()
        self._spawn("power_on")
        for target in (self._feed_gnss, self._read_panel, self._serve_control, self._watchdog):
            threading.Thread(target=target, daemon=True, name=f"{self.unit_id}-{target.__name__}").start()
        return self

    def _open_hardware(self):
        """The GNSS receiver's and the panel's ptys, and what the virtual board is told of
        its hardware (SIAGA_VBOARD: firmware/boards/virtual.py)."""
        # The slave ends stay open here too: a pty whose slave is closed reads EIO.
        self.gnss_fd, self._gnss_slave, gnss_path = raw_pty()
        self.panel_fd, self._panel_slave, panel_path = raw_pty()
        self._vboard = f"gnss={gnss_path},panel={panel_path}"
        if self.flash_blocks:  # the journal on a littlefs of its own
            self._vboard += f",flash={self.flash / 'data.lfs'}:{self.flash_blocks}"
        if self.modem is not None:  # a simulators.modem.ModemSimulator on a pty: the LTE modem
            self._vboard += f",modem={self.modem.path}:{self.modem.model}"

    def _spawn(self, reset_cause):
        """Start the firmware, as at power-on or after a reset of the given cause."""
        env = dict(
            os.environ,
            MICROPYPATH=".frozen",  # + the flash folder (main.py's) and lib/, as on a board
            SIAGA_VBOARD=self._vboard,
            SIAGA_RESET_CAUSE=reset_cause,
        )
        self.fed_at = time.time()  # the watchdog runs from the start: boot within its time
        self.proc = subprocess.Popen(
            [micropython_bin(), "-X", f"heapsize={self.heap}", "main.py"],
            cwd=self.flash,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=power_cut_with_parent,
        )
        threading.Thread(
            target=self._read_console, args=(self.proc,), daemon=True, name=f"{self.unit_id}-console"
        ).start()
        self._tell_supply()

    def _tell_supply(self):
        if self.supply_v is not None:  # the pty keeps it until the board reads its panel
            self.set_supply(self.supply_v)

    def set_supply(self, volts):
        """The vehicle's supply voltage now, as the board's ADC would see it."""
        self.supply_v = volts
        self._panel_write(f"V {volts:.1f}\n")

    def _watchdog(self):
        """The board's hardware watchdog: not fed for `watchdog_s`, it resets the unit.
        The same thread restarts a firmware that reset itself (RESET_EXIT); it lives as
        long as the unit, and a child dies with the thread that started it."""
        while not self.stopped.wait(0.5):
            fed = self.fed_at
            if time.time() - fed > self.watchdog_s and self.running:
                self.resets += 1
                self.proc.kill()
                self.proc.wait()
                self._spawn("watchdog")
            elif self.proc is not None and self.proc.poll() == RESET_EXIT and not self.stopped.is_set():
                self.resets += 1
                self._spawn("crash")

    # simulated hardware
    def _live_samples(self):
        while True:
            self.mover.t = time.time() - 1.0  # the receiver's clock is the wall clock
            yield self.mover.step(1.0)

    def replay(self, samples, rate=1.0):
        """Feed a recorded drive instead of the live route, `rate` fixes per second
        (faster than real time for benchmarks); `replay_done` is set at its end."""
        self._replay = (list(samples), rate)
        self.replay_done = threading.Event()
        return self

    def _feed_gnss(self):
        samples, rate = getattr(self, "_replay", (None, 1.0))
        for sample in samples if samples is not None else self._live_samples():
            try:
                os.write(self.gnss_fd, self.receiver.encode(sample))
            except OSError:
                return
            if self.stopped.wait(1.0 / rate - time.time() % (1.0 / rate)):
                return
        self.replay_done.set()

    def _panel_event(self, line):
        parts = line.split()
        with self._panel_lock:
            self.panel_log.append((time.time(), line))
            if len(parts) == 3 and parts[0] == "L":
                self.leds[int(parts[1])] = parts[2]
            elif len(parts) == 2 and parts[0] == "B":
                self.buzzer = parts[1] == "1"
            elif parts == ["W"]:
                self.fed_at = time.time()

    def _read_panel(self):
        buf = b""
        while not self.stopped.is_set():
            try:
                chunk = os.read(self.panel_fd, 256)
            except OSError:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self._panel_event(line.decode(errors="replace").strip())

    def _read_console(self, proc):
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            del self.lines[:-500]
            if self.on_line is not None:
                self.on_line(line)
            if self.echo:
                print(f"[{self.unit_id}] {line}", flush=True)

    def _panel_write(self, text):
        os.write(self.panel_fd, text.encode())

    def press(self, key, long_press=False, hold_s=None):
        """Press a status key like a crew: with contact bounce, held, released."""
        hold = hold_s if hold_s is not None else (2.6 if long_press else 0.15)
        self._panel_write(f"K {key} 1\nK {key} 0\nK {key} 1\n")  # bounce
        time.sleep(hold)
        self._panel_write(f"K {key} 0\n")
        time.sleep(0.1)  # a finger needs this long to press again; debounce needs 50 ms

    def power_off(self):
        """Ignition off: the firmware says goodbye and exits."""
        self._panel_write("P 0\n")

    def fill_heap(self, hold_ms=0):
        """Fault injection: the firmware takes every block of its heap and holds them for
        hold_ms (0: for good, a leak it cannot recover from without a reset)."""
        self._panel_write(f"H fill {int(hold_ms)}\n")

    def state(self):
        with self._panel_lock:
            return {
                "unit_id": self.unit_id,
                "leds": {str(k): v for k, v in self.leds.items()},
                "buzzer": self.buzzer,
                "running": self.running,
                "position": {"x": self.mover.x, "y": self.mover.y},
            }

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # control socket
    def _command(self, req):
        cmd = req.get("cmd")
        if cmd == "press":
            self.press(int(req["key"]), bool(req.get("long")))
            return {"ok": True}
        if cmd == "state":
            return dict(self.state(), console=self.lines[-int(req.get("lines", 20)) :])
        if cmd == "hang":  # fault injection: a task hangs (busy) or stops (stall)
            self._panel_write(f"H {req.get('how', 'stall')}\n")
            return {"ok": True}
        if cmd == "fill":  # fault injection: the heap full, for hold_ms (0: for good)
            self.fill_heap(int(req.get("hold_ms", 0)))
            return {"ok": True}
        if cmd == "supply":
            self.set_supply(float(req["volts"]))
            return {"ok": True}
        if cmd == "gnss":
            self.receiver.fix = bool(req.get("fix", True))
            return {"ok": True}
        return {"error": f"unknown command {cmd!r}"}

    def _client(self, conn):
        with conn, conn.makefile("rwb") as f:
            for raw in f:
                try:
                    reply = self._command(json.loads(raw))
                except (ValueError, KeyError, TypeError) as e:
                    reply = {"error": str(e)}
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()

    def _serve_control(self):
        path = self.control_path
        path.unlink(missing_ok=True)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(path))
        self._control_inode = path.stat().st_ino
        srv.listen(4)
        srv.settimeout(0.5)
        while not self.stopped.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()
        srv.close()

    def stop(self, clean=True, timeout=5):
        if self.running and clean:
            try:
                self.power_off()
                self.proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.running:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
        self.stopped.set()
        for fd in (self.gnss_fd, self.panel_fd, self._gnss_slave, self._panel_slave):
            try:
                os.close(fd)
            except OSError:
                pass
        try:  # a restarted unit may already own the path: remove only our own socket
            if self.control_path.stat().st_ino == getattr(self, "_control_inode", None):
                self.control_path.unlink()
        except FileNotFoundError:
            pass

    def kill(self):
        """A power cut: the firmware stops at once, mid-write or not."""
        self.stop(clean=False)


def control(sim_dir, unit_id, request, timeout=10):
    """Send one request to a running virtual unit's control socket."""
    path = Path(sim_dir) / f"{unit_id}.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except OSError:
            raise ConnectionError(f"no virtual unit {unit_id!r} is running (no {path})") from None
        s.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(s.makefile("rb").readline())
