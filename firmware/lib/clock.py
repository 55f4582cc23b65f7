# The unit's clock: Unix seconds UTC. GNSS time sets it; between fixes it runs on the
# millisecond ticks. Before the first fix it falls back to the board's RTC.
import time


class Clock:
    def __init__(self, rtc=None):
        self._rtc = rtc or time.time
        self._base = None
        self._at = 0
        self.synced = False

    def set(self, epoch, ms=0):
        self._base = epoch * 1000 + ms
        self._at = time.ticks_ms()
        self.synced = True

    def now(self):
        return self.split()[0]

    def split(self):
        """(Unix seconds, milliseconds) now."""
        if self._base is None:
            t = self._rtc()
            return int(t), int(t * 1000) % 1000
        ms = self._base + time.ticks_diff(time.ticks_ms(), self._at)
        return ms // 1000, ms % 1000
