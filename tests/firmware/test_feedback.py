# What the crew sees: blinking while pending, steady when acknowledged, error + buzzer
# when undelivered for too long.
from feedback import Feedback


class Board:
    def __init__(self):
        self.leds = {}
        self.buzz = False

    def led(self, k, mode):
        self.leds[k] = mode

    def buzzer(self, on):
        self.buzz = on


def test_pending_then_delivered():
    b = Board()
    f = Feedback(b, alarm_s=60)
    f.pressed(3, seq=7, now_ms=0)
    assert b.leds[3] == "blink"
    f.acked(7)
    assert b.leds[3] == "on" and not b.buzz


def test_an_ack_for_an_older_press_does_not_confirm_the_newer():
    b = Board()
    f = Feedback(b)
    f.pressed(3, seq=7, now_ms=0)
    f.pressed(4, seq=9, now_ms=100)
    assert b.leds[3] == "off" and b.leds[4] == "blink"
    f.acked(7)
    assert b.leds[4] == "blink"
    f.acked(9)
    assert b.leds[4] == "on"


def test_undelivered_too_long_alarms_and_a_late_ack_clears_it():
    b = Board()
    f = Feedback(b, alarm_s=60)
    f.pressed(1, seq=3, now_ms=0)
    f.check(59000)
    assert b.leds[1] == "blink" and not b.buzz
    f.check(61000)
    assert b.leds[1] == "error" and b.buzz
    f.acked(3)
    assert b.leds[1] == "on" and not b.buzz


def test_an_assignment_calls_the_crew_with_the_buzzer():
    b = Board()
    f = Feedback(b)
    f.alert(now_ms=0)
    assert b.buzz
    f.check(2000)
    assert b.buzz
    f.check(3100)
    assert not b.buzz


def test_the_alert_ending_does_not_silence_an_undelivered_alarm():
    b = Board()
    f = Feedback(b, alarm_s=1)
    f.pressed(3, seq=1, now_ms=0)
    f.alert(now_ms=0)
    f.check(1500)
    assert b.leds[3] == "error" and b.buzz
    f.check(3500)
    assert b.buzz
