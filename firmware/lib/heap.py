# The unit's heap, measured and defended (docs/firmware-memory.md). An allocation that
# fails must not end the unit:
#   - an emergency reserve is taken at start and given back to the heap when an
#     allocation fails, so that the recovery itself (a log line, a collection, a link
#     closed) can run; it is taken again once the heap has room;
#   - when failures go on for longer than `reset_ms` (at least three, none a minute
#     after the one before), the heap is not coming back: the unit gives up, main.py
#     resets it, and its next birth says "memory".
# Figures, for the technician's telemetry: the heap in use at start, the peak sampled at
# quiet points (each second, after a collection), the high-water mark sampled at the
# allocation-heavy points too (each message framed, before it is written), and the
# largest free block.
import gc
import sys
import time

from micropython import const

_QUIET_MS = const(60000)  # a minute without a failure ends a run of them


def borrow(name):
    """The module `name` ("a" or "package.a"), loaded for one use: neither it nor what it
    loaded with it stays in sys.modules, so it all goes back to the heap once the caller
    lets go of it. For code that runs now and then (a session opened, a settings push,
    the telemetry): its bytecode need not hold the heap in between. Never on the way out
    of a MemoryError: loading takes heap (docs/firmware-memory.md)."""
    had = list(sys.modules)
    mod = __import__(name)
    for part in name.split(".")[1:]:
        mod = getattr(mod, part)
    for loaded in list(sys.modules):
        if loaded not in had:
            del sys.modules[loaded]
    return mod


class Restart(BaseException):
    """Raised to end the firmware on purpose (not an Exception: no task catches it, it
    stops the event loop): main.py resets the unit, args[0] the reason ("memory")."""


class Heap:
    # A collection after every this many bytes allocated, not only when an allocation
    # fails: garbage is freed before it spreads, so the heap stays in one piece (in the
    # unix port at 96 KB its largest free block stays near 8 KB, against some 600 bytes
    # when collections wait for a full heap). It costs a collection every few KB.
    collect_every = 4096

    def __init__(self, reserve=1024, reset_s=10):
        gc.threshold(self.collect_every)
        self.reserve_bytes = reserve
        self.reset_ms = reset_s * 1000
        self.reserve = None
        self.start = 0  # bytes in use once the unit was built
        self.peak = 0  # the most in use at a quiet point
        self.high = 0  # the most in use at any point sampled, quiet or busy
        self.failures = 0  # allocations that failed and were recovered from
        self._first = self._last = None  # ticks of the first and the last failure of a run
        self._count = 0  # failures in that run
        self.arm()

    def arm(self):
        """Take the reserve, if it is not held; True when it is."""
        if self.reserve is None:
            try:
                self.reserve = bytearray(self.reserve_bytes)
            except MemoryError:
                return False
        return True

    def failed(self):
        """An allocation failed: the reserve goes back to the heap. True when failures
        have gone on for longer than reset_ms (at least 3 of them, none more than
        _QUIET_MS after the one before): the heap is not coming back, time for the last
        resort. A burst that passes (a message too large, a spike) is only counted."""
        self.reserve = None
        self.failures += 1
        now = time.ticks_ms()
        if self._first is None or time.ticks_diff(now, self._last) > _QUIET_MS:
            self._first, self._count = now, 0
        self._last = now
        self._count += 1
        gc.collect()
        return self._count >= 3 and time.ticks_diff(now, self._first) > self.reset_ms

    def sample(self, quiet=False):
        """Collect, and note the heap in use: at a quiet point (each second: the peak),
        or at a busy one (a message just framed, all it took still held: the high-water
        mark). The bytes in use."""
        gc.collect()
        n = gc.mem_alloc()
        if quiet and n > self.peak:
            self.peak = n
        if n > self.high:
            self.high = n
        return n

    @staticmethod
    def largest_free(grain=16, most=4096):
        """The largest block the heap can give now, in bytes, up to `most`: found by
        allocating, and the collector is conservative, so a stale pointer left in the
        stack can keep a block tried alive for a while; a block of most of the free heap
        kept so would starve the allocations that follow. `most` means at least that
        (the firmware's largest allocation is its 640-byte PUBLISH buffer)."""
        lo, hi = 0, min(gc.mem_free(), most + grain)
        while hi - lo > grain:
            mid = (lo + hi) // 2
            try:
                block = bytearray(mid)
                lo = mid
            except MemoryError:
                hi = mid
            block = None  # noqa: F841 (given back before the next try)
        return min(lo, most)
