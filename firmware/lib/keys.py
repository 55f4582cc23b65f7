# Status keys: debounced, with long press for the keys that need it (the emergency key).
# Poll-driven: `poll(now_ms)` reads each key's raw level from the board, so it works the
# same on GPIO pins and on the virtual panel.
import time


class Key:
    def __init__(self, number, long_press):
        self.number = number
        self.long_press = long_press
        self.raw = False
        self.stable = False
        self.changed_at = 0
        self.down_at = 0
        self.fired = False


class Keypad:
    debounce_ms = 50
    long_press_ms = 2000

    def __init__(self, read_key, keys, long_keys, on_press, debounce_ms=None, long_press_ms=None):
        self.read_key = read_key  # read_key(number) -> True while pressed
        self.keys = [Key(k, k in long_keys) for k in keys]
        self.on_press = on_press
        if debounce_ms is not None:
            self.debounce_ms = debounce_ms
        if long_press_ms is not None:
            self.long_press_ms = long_press_ms

    def _settle(self, key, now):
        key.stable = key.raw
        key.fired = False
        key.down_at = now
        if key.stable and not key.long_press:
            key.fired = True
            self.on_press(key.number, False)

    def poll(self, now=None):
        now = time.ticks_ms() if now is None else now
        for key in self.keys:
            raw = bool(self.read_key(key.number))
            if raw != key.raw:
                key.raw = raw
                key.changed_at = now
            elif raw != key.stable and time.ticks_diff(now, key.changed_at) >= self.debounce_ms:
                self._settle(key, now)
            if key.stable and key.long_press and not key.fired:
                if time.ticks_diff(now, key.down_at) >= self.long_press_ms:
                    key.fired = True
                    self.on_press(key.number, True)
