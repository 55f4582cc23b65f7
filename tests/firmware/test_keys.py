# Debounce and long press, driven with explicit millisecond times.
from keys import Keypad


class Panel:
    def __init__(self):
        self.down = {}
        self.presses = []

    def read(self, k):
        return self.down.get(k, False)

    def pressed(self, k, long_press):
        self.presses.append((k, long_press))


def _pad(panel):
    return Keypad(panel.read, [0, 1, 2, 3], [0], panel.pressed, debounce_ms=50, long_press_ms=2000)


def _hold(pad, panel, key, start, ms, step=10):
    panel.down[key] = True
    t = start
    while t < start + ms:
        pad.poll(t)
        t += step
    panel.down[key] = False
    for i in range(10):
        pad.poll(t + i * step)
    return t + 10 * step


def test_a_press_counts_once_after_debounce():
    panel = Panel()
    pad = _pad(panel)
    _hold(pad, panel, 3, 0, 150)
    assert panel.presses == [(3, False)]


def test_contact_bounce_is_one_press():
    panel = Panel()
    pad = _pad(panel)
    t = 0
    for level in (True, False, True, False, True):  # 5 ms bounce
        panel.down[3] = level
        pad.poll(t)
        t += 5
    _hold(pad, panel, 3, t, 120)
    assert panel.presses == [(3, False)]


def test_a_glitch_shorter_than_debounce_is_ignored():
    panel = Panel()
    pad = _pad(panel)
    _hold(pad, panel, 2, 0, 30)
    assert panel.presses == []


def test_emergency_key_needs_a_long_press():
    panel = Panel()
    pad = _pad(panel)
    t = _hold(pad, panel, 0, 0, 1500)
    assert panel.presses == []
    _hold(pad, panel, 0, t + 100, 2200)
    assert panel.presses == [(0, True)]


def test_long_press_fires_while_held_not_on_release():
    panel = Panel()
    pad = _pad(panel)
    panel.down[0] = True
    for t in range(0, 2100, 10):
        pad.poll(t)
    assert panel.presses == [(0, True)]
    for t in range(2100, 5000, 10):
        pad.poll(t)
    assert panel.presses == [(0, True)]
