# The virtual board's flash chip: a file on the host holding `count` erase blocks of
# `size` bytes, with littlefs (the ESP32 port's filesystem) mounted on it by MicroPython's
# own VfsLfs2. So the unit's data lives on a real littlefs, of a real size, and a full
# flash fails the way it fails on a board: OSError ENOSPC (28).
# Block protocol: MicroPython's extended block device (readblocks/writeblocks with an
# offset, ioctl 4 count, 5 size, 6 erase).
import os
import vfs


_ERASED = b"\xff" * 256


class FileBlocks:
    def __init__(self, path, count, size=4096):
        self.size = size
        self.count = count
        try:
            self.f = open(path, "r+b")
        except OSError:
            self.f = open(path, "w+b")
            for _ in range(count * size // len(_ERASED)):
                self.f.write(_ERASED)
            self.f.flush()

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * self.size + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=0):
        self.f.seek(n * self.size + off)
        self.f.write(buf)
        self.f.flush()  # to the host's kernel: a power cut (SIGKILL) keeps it

    def ioctl(self, op, arg):
        if op == 4:
            return self.count
        if op == 5:
            return self.size
        if op == 6:  # erase: all ones, as NOR flash erases
            self.f.seek(arg * self.size)
            for _ in range(self.size // len(_ERASED)):
                self.f.write(_ERASED)
            return 0
        return 0


def littlefs(path, count, size=4096):
    """The littlefs on the block file at `path`, formatted on first use."""
    dev = FileBlocks(path, count, size)
    try:
        return vfs.VfsLfs2(dev)
    except OSError:
        vfs.VfsLfs2.mkfs(dev)
        return vfs.VfsLfs2(dev)


def mount(path, count, where="/data", size=4096):
    """Mount the littlefs on the block file at `path`; returns the mount point."""
    vfs.mount(littlefs(path, count, size), where)
    return where


def free_bytes(where="/data"):
    st = os.statvfs(where)
    return st[0] * st[3]
