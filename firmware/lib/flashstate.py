# Small values kept on the unit's flash across power cuts, each written atomically:
# write a temp file, then rename over the old one (atomic on littlefs and POSIX).
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
