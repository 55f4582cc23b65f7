# Small values kept on the unit's flash across power cuts, each written atomically:
# write a temp file, then rename over the old one (atomic on littlefs and POSIX). Used at
# start (the boot counter, the reason for the last reset), when settings are pushed and
# when the unit resets itself: main.py lets go of it after the boot.
import os


def read_int(path, default=0):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(data)
    os.rename(tmp, path)


def next_boot(path="boot.txt"):
    """Increment and return the boot counter (0..65535)."""
    boot = (read_int(path, -1) + 1) & 0xFFFF
    write_atomic(path, str(boot))
    return boot


# Why the firmware reset the unit itself, for the next birth's `reset`. main.py writes
# it just before machine.reset() (which the ESP32 reports as a hard reset, as it does a
# crash); the next boot reads it once and removes it.
RESET_FILE = "reset.txt"


def note_reset(cause, path=RESET_FILE):
    try:
        write_atomic(path, cause)
    except OSError:  # a full flash: the birth says "crash" instead
        pass


def reset_cause(board_cause, path=RESET_FILE):
    """The reason for this start: the one the firmware noted before it reset the unit,
    unless the board saw a power cut or its watchdog since (the note is then stale)."""
    try:
        with open(path) as f:
            noted = f.read().strip()
        os.remove(path)
    except OSError:
        return board_cause
    return board_cause if board_cause in ("power_on", "watchdog") or not noted else noted
