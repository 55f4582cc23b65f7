"""A virtual board on a serial port: the MicroPython unix port behind a pseudo-terminal,
reachable exactly like a board on /dev/ttyUSB0, so that `mpremote connect PORT` and
`siaga provision --port PORT` work on it unchanged.

    mpremote ──> serial pty (PORT) <──> this bridge <──> a fresh pty per run <──> micropython
                                                          cwd = the flash folder

It behaves like a board with MicroPython on it:
- power on: `main.py` on the flash runs (its console comes out of the serial port);
  with no `main.py` the REPL waits (a blank board with MicroPython on it);
- Ctrl-C on the serial port interrupts `main.py` and drops to the REPL, the way
  mpremote takes over a running board; the REPL is the unix port's own, raw REPL
  and raw-paste included, so mpremote copies and hashes files on the flash folder;
- a soft reset (Ctrl-D) ends the unix port's process: the board reboots into `main.py`
  (reset cause `soft`), as a board does after a soft reset.
The GNSS receiver, the crew panel and the control socket are VirtualUnit's (a press
from the panel, the LEDs read back); its watchdog runs only while `main.py` does.
"""

import os
import queue
import subprocess
import threading
import time
from pathlib import Path

from .ptys import raw_pty
from .vunit import RESET_EXIT, VirtualUnit, micropython_bin, power_cut_with_parent

CTRL_C = b"\x03"
PROMPT = b">>> "


class SerialBoard(VirtualUnit):
    """A board on a serial port (`.port`); `unit_id` names its control socket only: the
    unit's identity is whatever provisioning writes to its flash."""

    def __init__(self, name, flash, sim_dir, lfs_blocks=None, **kw):
        kw.setdefault("flash_firmware", False)
        super().__init__(name, flash, sim_dir, **kw)
        self.lfs_blocks = lfs_blocks  # the whole flash a littlefs of this many 4 KB blocks
        self.mode = "off"  # "app" (main.py runs), "repl", "off"
        self.serial_log = bytearray()  # everything the board wrote to its serial port
        self._child_fd = None
        self._pending = b""  # input for a REPL that is not listening yet
        self._ready = threading.Event()
        self._lock = threading.RLock()
        self._boots = queue.Queue()  # processes start in one long-lived thread (below)
        self.boots = 0  # times main.py started
        self._stopping = False
        self._gen = 0  # processes asked for: only the latest one starts

    def start(self):
        self.flash.mkdir(parents=True, exist_ok=True)  # with a littlefs: the process's cwd only
        self.sim_dir.mkdir(parents=True, exist_ok=True)
        self.serial_fd, self._serial_slave, self.port = raw_pty()
        self._open_hardware()
        self._spawn("power_on")
        for target in (
            self._starter,
            self._feed_gnss,
            self._read_panel,
            self._serve_control,
            self._watchdog,
            self._serial_in,
        ):
            threading.Thread(target=target, daemon=True, name=f"{self.unit_id}-{target.__name__}").start()
        return self

    # the process behind the serial port
    def _spawn(self, reset_cause):
        """Boot: main.py when the flash has one, else the REPL."""
        app = self._has_main()
        self._run(["main.py"] if app else [], "app" if app else "repl", reset_cause)
        self._tell_supply()

    # A littlefs flash: the unix port mounts it as its root before the REPL or main.py
    # runs (LFS_BOOT below), so what mpremote writes lands on a real littlefs of a real
    # size, and a full one fails as on a board, with ENOSPC. The host's files stay
    # reachable under /host (the ptys the virtual board opens).
    LFS_BOOT = """
import os, sys, vfs
sys.path.insert(0, %(boards)r)
import vflash
sys.path.pop(0)
fs = vflash.littlefs(%(image)r, %(blocks)d)
vfs.umount("/")
vfs.mount(fs, "/")
vfs.mount(vfs.VfsPosix("/"), "/host")
os.chdir("/")
sys.path[0] = ""
del fs, vflash
if os.getenv("SIAGA_RUN") == "main.py":
    exec(open("main.py").read(), {"__name__": "__main__"})
"""

    @property
    def image_path(self):
        return self.flash.with_suffix(".lfs")

    def _lfs_boot(self):
        path = self.sim_dir / f"{self.unit_id}-boot.py"
        boards = Path(__file__).resolve().parent.parent / "firmware" / "boards"
        text = self.LFS_BOOT % {
            "boards": str(boards),
            "image": str(self.image_path),
            "blocks": self.lfs_blocks,
        }
        path.write_text(text)
        return path

    def _has_main(self):
        if not self.lfs_blocks:
            return (self.flash / "main.py").exists()
        return self._lfs_main_exists()

    def _lfs_main_exists(self):
        if not self.image_path.exists():
            return False
        check = "import os\ntry:\n os.stat('main.py')\n print(1)\nexcept OSError:\n print(0)\n"
        boot = self._lfs_boot().read_text() + check
        run = subprocess.run(
            [micropython_bin(), "-c", boot], capture_output=True, text=True, timeout=30, cwd=self.sim_dir
        )
        return run.stdout.strip().endswith("1")

    def _run(self, args, mode, reset_cause):
        with self._lock:
            self.mode = mode
            self._ready.clear()
            if mode == "app":
                self._ready.set()
                self.boots += 1
            self.fed_at = time.time()
            self._gen += 1
            self._boots.put((args, reset_cause, self._gen))

    def _starter(self):
        """Start each process from this one thread: a child dies with the thread that
        started it (PR_SET_PDEATHSIG), so not from a short-lived reader's."""
        while not self.stopped.is_set():
            try:
                args, reset_cause, gen = self._boots.get(timeout=0.5)
            except queue.Empty:
                continue
            with self._lock:
                if gen == self._gen and not (self.stopped.is_set() or self._stopping):
                    self._start_process(args, reset_cause)

    def _start_process(self, args, reset_cause):
        master, slave, _ = raw_pty()
        env = dict(
            os.environ,
            MICROPYPATH=".frozen",
            SIAGA_VBOARD=self._vboard,
            SIAGA_RESET_CAUSE=reset_cause,
        )
        if self.lfs_blocks:  # the REPL (-i) or main.py, after the littlefs is mounted
            env.update(SIAGA_RUN=args[0] if args else "", SIAGA_VBOARD=self._vboard.replace("=/", "=/host/"))
            args = [str(self._lfs_boot())] if args else ["-i", str(self._lfs_boot())]
        self.proc = subprocess.Popen(
            [micropython_bin(), "-X", f"heapsize={self.heap}", *args],
            cwd=self.flash,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=power_cut_with_parent,
            start_new_session=True,
        )
        os.close(slave)
        self._child_fd = master
        threading.Thread(
            target=self._serial_out, args=(self.proc, master), daemon=True, name=f"{self.unit_id}-out"
        ).start()

    def _serial_out(self, proc, fd):
        """The process's output to the serial port, until it ends; then the board reboots
        (the REPL ended by a soft reset) or falls to the REPL (main.py returned)."""
        line = b""
        while True:
            try:
                data = os.read(fd, 1024)
            except OSError:  # EIO: the process and its pty are gone
                break
            if not data:
                if proc.poll() is not None:
                    break
                time.sleep(0.01)
                continue
            self._to_serial(data)
            if not self._ready.is_set() and PROMPT in data:
                self._ready.set()
                self._flush_pending()
            if self.mode == "app":  # the firmware's console; not the REPL's traffic
                line = self._console_lines(line + data)
        proc.wait()
        with self._lock:  # one step, so input never finds the board between two processes
            if self._child_fd == fd:
                self._child_fd = None
            os.close(fd)
            if proc is not self.proc or self.stopped.is_set() or self._stopping:
                return
            if self.mode == "repl":
                self._to_serial(b"soft reboot\r\n")
                self._spawn("soft")
            elif proc.returncode == RESET_EXIT:  # main.py reset the board (machine.reset())
                self.resets += 1
                self._spawn("crash")
            else:
                self._run([], "repl", "soft")

    def _console_lines(self, buf):
        *lines, rest = buf.split(b"\n")
        for raw in lines:
            self.lines.append(raw.decode(errors="replace").rstrip())
            del self.lines[:-500]
        return rest

    def _to_serial(self, data):
        self.serial_log += data
        del self.serial_log[:-65536]
        try:
            os.write(self.serial_fd, data)
        except OSError:
            pass

    def _flush_pending(self):
        with self._lock:
            if not self._pending or self._child_fd is None:
                return
            try:
                os.write(self._child_fd, self._pending)
                self._pending = b""
            except OSError:  # the process is going: its successor gets it
                pass

    def _serial_in(self):
        """What the host sends to the board: Ctrl-C interrupts main.py; the REPL gets
        the rest once it listens (the unix port drops input typed before its prompt)."""
        while not self.stopped.is_set():
            try:
                data = os.read(self.serial_fd, 4096)
            except OSError:
                return
            if not data:
                time.sleep(0.01)
                continue
            with self._lock:
                if self.mode == "app":
                    if CTRL_C not in data:
                        continue  # the firmware does not read its console
                    data = data[data.index(CTRL_C) + 1 :]
                    self._interrupt()
                self._pending += data
                ready = self._ready.is_set()
            if ready:
                self._flush_pending()

    def _interrupt(self):
        """Ctrl-C: main.py stops and the board drops to its REPL."""
        self._kill()
        self._to_serial(b"\r\nKeyboardInterrupt:\r\n")
        self._run([], "repl", "soft")

    def _watchdog(self):
        while not self.stopped.wait(0.5):
            with self._lock:
                starving = self.mode == "app" and time.time() - self.fed_at > self.watchdog_s
                if starving and self.running:
                    self.resets += 1
                    self._kill()
                    self._spawn("watchdog")

    def reset(self, cause="power_on"):
        """The reset button (or a power cycle): whatever runs stops, the board boots."""
        with self._lock:
            self._kill()
            self._spawn(cause)

    def _kill(self):
        proc, self.proc = self.proc, None  # its reader sees it is no longer the board's
        if proc is not None:
            proc.kill()
            proc.wait()

    def _command(self, req):
        if req.get("cmd") == "reset":
            self.reset()
            return {"ok": True}
        return super()._command(req)

    def state(self):
        return dict(super().state(), mode=self.mode, port=self.port, boots=self.boots)

    def stop(self, clean=False, timeout=5):
        self._stopping = True
        super().stop(clean=clean, timeout=timeout)
        for fd in (self.serial_fd, self._serial_slave):
            try:
                os.close(fd)
            except OSError:
                pass


def main(argv=None):
    """`python -m simulators.vboard_serial FLASH_DIR`: run a board, print its port."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("flash", help="the board's flash folder")
    p.add_argument("--sim-dir", default="var/sim", help="where its control socket goes")
    p.add_argument("--name", default="vboard", help="its control socket's name")
    p.add_argument(
        "--flash-blocks", type=int, help="a littlefs flash of this many 4 KB blocks (FLASH_DIR.lfs)"
    )
    args = p.parse_args(argv)
    board = SerialBoard(args.name, args.flash, args.sim_dir, lfs_blocks=args.lfs_blocks).start()
    print(f"virtual board on {board.port} (flash {board.flash}); Ctrl-C to power it off", flush=True)
    try:
        board.stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()


if __name__ == "__main__":
    main()
