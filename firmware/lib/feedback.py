# What the crew sees after a press: the pressed key's LED blinks while the press is on
# its way, burns steady once the gateway acknowledged it (by boot and seq), and flashes
# an error pattern with the buzzer when it could not be delivered for too long.
import time

OFF = "off"
PENDING = "blink"
DELIVERED = "on"
UNDELIVERED = "error"


class Feedback:
    alert_ms = 3000  # the buzzer's call when the dispatcher assigns the unit

    def __init__(self, board, alarm_s=60):
        self.board = board
        self.alarm_ms = alarm_s * 1000
        self.alert_until = None
        self.key = None
        self.seq = None
        self.at = 0
        self.state = OFF
        self.buzzing = False

    def _show(self, state):
        if state != self.state:
            self.state = state
            self.board.led(self.key, state)
        self._buzz(state == UNDELIVERED or self.alert_until is not None)

    def _buzz(self, on):
        if on != self.buzzing:
            self.buzzing = on
            self.board.buzzer(on)

    def alert(self, now_ms=None):
        """Call the crew: the buzzer sounds for alert_ms (an assignment came in)."""
        now_ms = time.ticks_ms() if now_ms is None else now_ms
        self.alert_until = time.ticks_add(now_ms, self.alert_ms)
        self._buzz(True)

    def pressed(self, key, seq, now_ms=None):
        if self.key is not None and self.key != key:
            self.board.led(self.key, OFF)
        self.key, self.seq = key, seq
        self.at = time.ticks_ms() if now_ms is None else now_ms
        self.state = None
        self._show(PENDING)

    def acked(self, seq):
        if seq == self.seq:
            self._show(DELIVERED)

    def check(self, now_ms=None):
        now_ms = time.ticks_ms() if now_ms is None else now_ms
        if self.alert_until is not None and time.ticks_diff(now_ms, self.alert_until) >= 0:
            self.alert_until = None
            self._buzz(self.state == UNDELIVERED)
        if self.state == PENDING and time.ticks_diff(now_ms, self.at) > self.alarm_ms:
            self._show(UNDELIVERED)
