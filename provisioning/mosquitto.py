"""Start Mosquitto, a real broker process, from the repository's configuration."""

import ctypes
import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

TEMPLATE = Path(__file__).with_name("mosquitto.conf")
INSTALL_HINT = "install it with: apt-get install mosquitto  (Debian's package)"


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def wait_for_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def die_with_parent(sig=signal.SIGTERM):
    """Ask the kernel to send `sig` to this process when its parent dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG


def mosquitto_bin():
    path = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if path is None:
        raise FileNotFoundError("mosquitto is not installed; " + INSTALL_HINT)
    return path


class Mosquitto:
    def __init__(self, data_dir, port=None, bind="127.0.0.1"):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port(bind)
        self.bind = bind
        self.proc = None

    @property
    def config_path(self):
        return self.data_dir / "mosquitto.conf"

    def write_config(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = TEMPLATE.read_text()
        for name, value in (
            ("PORT", self.port),
            ("BIND", self.bind),
            ("DATA", self.data_dir),
            ("USER", getpass.getuser()),
        ):
            text = text.replace(f"@{name}@", str(value))
        self.config_path.write_text(text)

    def start(self, timeout=10.0):
        self.write_config()
        self.proc = subprocess.Popen(
            [mosquitto_bin(), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        try:
            wait_for_port(self.port, self.bind, timeout, self.proc)
        except RuntimeError:
            raise RuntimeError("mosquitto failed: " + self.proc.stderr.read().decode()) from None
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()
