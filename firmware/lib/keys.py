# Status keys: debounced, with long press for the keys that need it (the emergency key).
# Poll-driven: `poll(now_ms)` reads each key's raw level from the board, so it works the
# same on GPIO pins and on the virtual panel. The keys' state is a few bit masks and two
# lists of times, not an object per key (each would cost the unit's heap ~160 bytes on
# the 64-bit unix port), and polling allocates nothing.
import time


class Keypad:
    debounce_ms = 50
    long_press_ms = 2000

    def __init__(self, read_key, keys, long_keys, on_press, debounce_ms=None, long_press_ms=None):
        self.read_key = read_key  # read_key(number) -> True while pressed
        self.numbers = bytes(keys)
        self.on_press = on_press
        if debounce_ms is not None:
            self.debounce_ms = debounce_ms
        if long_press_ms is not None:
            self.long_press_ms = long_press_ms
        self._long = 0  # bit i: key i acts only on a long press
        for i in range(len(keys)):
            if keys[i] in long_keys:
                self._long |= 1 << i
        self._raw = self._stable = self._fired = 0  # bit i: key i's level, debounced level, fired
        self._changed = [0] * len(keys)  # when the raw level last changed
        self._down = [0] * len(keys)  # when the debounced level last changed

    def _settle(self, i, bit, now):
        self._stable ^= bit
        self._fired &= ~bit
        self._down[i] = now
        if self._stable & bit and not self._long & bit:
            self._fired |= bit
            self.on_press(self.numbers[i], False)

    def poll(self, now=None):
        now = time.ticks_ms() if now is None else now
        for i in range(len(self.numbers)):
            bit = 1 << i
            raw = bit if self.read_key(self.numbers[i]) else 0
            if raw != self._raw & bit:
                self._raw ^= bit
                self._changed[i] = now
            elif raw != self._stable & bit and time.ticks_diff(now, self._changed[i]) >= self.debounce_ms:
                self._settle(i, bit, now)
            if self._stable & self._long & bit and not self._fired & bit:
                if time.ticks_diff(now, self._down[i]) >= self.long_press_ms:
                    self._fired |= bit
                    self.on_press(self.numbers[i], True)
