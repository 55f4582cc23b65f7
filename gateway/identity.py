"""Which message identities (boot, seq) a unit has used, so that a message is judged by
its identity before it touches anything: new, a duplicate, or a forgery.

`(unit, boot, seq)` names one uplink message for ever (docs/protocol.md); `seq` is
shared by every kind of message of a boot. `SeenIds` keeps, per unit, the identities
stored so far as ranges of seq per boot (a live unit's are one range per boot, plus a
gap for each message that never arrived), bounded to MAX_RANGES; it is saved with the
unit's state snapshot, in the same transaction as the messages.

Below its `floor` (an identity older than what it holds: stored before this was kept,
or forgotten when the ranges were trimmed) it answers None, "not known", and the
pipeline asks the store instead.

Sans-I/O, like availability.py: no SQLite, no clock.
"""

import bisect
from array import array
from dataclasses import dataclass
from itertools import chain

from .errors import Rejected

MAX_RANGES = 16  # per unit (a live unit has one, plus one per message lost for good); past it
# the oldest are forgotten and the floor rises: what is older is asked of the store


@dataclass(frozen=True)
class Trust:
    """How far a unit's identities and clock may move (gateway settings, docs/configuration.md)."""

    max_clock_ahead: float = 180.0  # s a fix or press may be ahead of the gateway's clock
    max_boot_step: int = 1000  # boots a unit may have made unseen between two messages
    max_seq_step: int = 1_000_000  # messages a unit may have made unseen in one boot


class SeenIds:
    """The identities one unit has used: sorted, disjoint ranges (boot, lo, hi), inclusive."""

    __slots__ = ("ranges", "floor")

    def __init__(self, ranges=(), floor=None):
        self.ranges = list(ranges)  # of tuples
        self.floor = tuple(floor) if floor is not None else None

    @classmethod
    def fresh(cls):
        """A new start (Pipeline, `reset_ids`): every identity counts as unused."""
        return cls((), (0, 0))

    def copy(self):
        return SeenIds(self.ranges, self.floor)

    def to_bytes(self):
        """As saved with the unit's state: the floor, then each range, as unsigned 64-bit
        integers (on the hot path: a batch saves every unit it touched)."""
        if self.floor is None:
            return b""
        return array("Q", chain(self.floor, chain.from_iterable(self.ranges))).tobytes()

    @classmethod
    def from_bytes(cls, data):
        if not data:
            return cls()
        numbers = array("Q", data).tolist()
        ranges = list(zip(numbers[2::3], numbers[3::3], numbers[4::3], strict=True))
        return cls(ranges, numbers[:2])

    def newest(self):
        """(boot, seq) of the newest identity, or None."""
        if not self.ranges:
            return None
        boot, _, hi = self.ranges[-1]
        return boot, hi

    def contains(self, boot, seq):
        """True: used; False: not used; None: not known here (ask the store)."""
        if self.floor is None or (boot, seq) < self.floor:
            return None
        i = bisect.bisect_right(self.ranges, (boot, seq, float("inf"))) - 1
        if i >= 0:
            b, lo, hi = self.ranges[i]
            return b == boot and lo <= seq <= hi
        return False

    def add(self, boot, seq):
        if self.floor is None:
            self.floor = (boot, seq)
        ranges = self.ranges
        if ranges:
            b, lo, hi = ranges[-1]
            if b == boot and hi + 1 == seq:  # the common case: the next message of the newest boot
                ranges[-1] = (b, lo, seq)
                return
            if (boot, seq) > (b, hi):  # ahead of all, past a gap
                ranges.append((boot, seq, seq))
                self._trim()
                return
        i = bisect.bisect_left(ranges, (boot, seq, seq))
        ranges.insert(i, (boot, seq, seq))
        self._merge(i)
        self._merge(i - 1)
        self._trim()

    def _trim(self):
        ranges = self.ranges
        if len(ranges) > MAX_RANGES:
            del ranges[: len(ranges) - MAX_RANGES]
            self.floor = max(self.floor, ranges[0][:2])

    def _merge(self, i):
        """Join ranges i and i + 1 if they touch."""
        r = self.ranges
        if 0 <= i < len(r) - 1 and r[i][0] == r[i + 1][0] and r[i][2] + 1 >= r[i + 1][1]:
            r[i : i + 2] = [(r[i][0], r[i][1], max(r[i][2], r[i + 1][2]))]

    def check_step(self, boot, seq, trust):
        """Rejected (boot_jump, seq_jump) if (boot, seq) is further ahead of the newest
        identity than a unit can go unseen; a unit with no known identity may start
        anywhere."""
        newest = self.newest()
        if newest is None:
            return
        nb, ns = newest
        if boot > nb + trust.max_boot_step:
            raise Rejected(
                f"boot {boot} is more than {trust.max_boot_step} boots ahead of the last known {nb}",
                "boot_jump",
            )
        ahead = seq - ns if boot == nb else seq if boot > nb else 0
        if ahead > trust.max_seq_step:
            raise Rejected(
                f"seq {seq} of boot {boot} is more than {trust.max_seq_step} ahead of the last known"
                f" ({nb}, {ns})",
                "seq_jump",
            )
