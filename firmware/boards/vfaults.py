# Fault injection on the virtual board (boards/virtual.py), for the tests: the panel's
# "H" lines. Loaded when the simulator asks, and given back (heap.borrow): a unit that is
# not under test never holds this code in its heap.
import asyncio


def inject(parts, unit):
    """The panel line `parts` (split, bytes): H busy, H stall, H fill MS."""
    if parts == [b"H", b"busy"]:
        while True:  # a task that never yields: nothing else runs, nothing feeds
            pass
    elif parts == [b"H", b"stall"]:
        unit.stall_keys = True
    elif len(parts) == 3 and parts[1] == b"fill":
        asyncio.create_task(_fill(int(parts[2])))


async def _fill(hold_ms):
    """Take every block of the heap, of every size down to the smallest, until it is
    full; hold them hold_ms (0: for good, a leak)."""
    hog = []
    size = 1024
    while size >= 16:
        try:
            hog.append(bytearray(size))
        except MemoryError:
            size //= 2
    while not hold_ms:
        await asyncio.sleep_ms(3600000)  # a leak: held for good
    await asyncio.sleep_ms(hold_ms)
    hog = None  # noqa: F841 (given back)
