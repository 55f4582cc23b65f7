# The ESP32 boards' classes on a simulated `machine` (fakemachine.py): LEDs through the
# 74HC595 chain, keys direct or through the MCP23017, the buzzer, the UARTs, the supply
# ADC, reset causes and the watchdog. Each test runs in a process of its own.
import asyncio
import sys
import time

import fakemachine as m

sys.modules["machine"] = m  # before any board module imports it
from boards.esp32_ec25 import ESP32EC25_R1  # noqa: E402
from boards.esp32s3_sim7600_m8n import ESP32S3SIM7600M8N_R1  # noqa: E402


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def latched(board):
    # a 74HC595 chain: shift on SRCLK rising, copy to the outputs on RCLK rising
    p, data, reg, out = board.pins, 0, 0, None
    for n, v in m.writes:
        if n == p["hc595_data"]:
            data = v
        elif n == p["hc595_clock"] and v:
            reg = (reg << 1 | data) & 0xFFFF
        elif n == p["hc595_latch"] and v:
            out = reg
    return out


def leds_and_buzzer(board):
    check(latched(board) == 0, "chain cleared at start")
    board.led(3, "on")
    board.led(9, "on")
    check(latched(board) == 1 << 3 | 1 << 9, "LEDs 3 and 9 on")
    board.led(3, "blink")
    board._show_leds(0)
    check(latched(board) == 1 << 3 | 1 << 9, "blink: on in the first half")
    board._show_leds(board.blink_ms)
    check(latched(board) == 1 << 9, "blink: off in the second half")
    board.led(9, "error")
    board._show_leds(board.error_ms)
    check(latched(board) == 1 << 3, "error: fast flash, off phase (3 still blinking on)")
    board._show_leds(2 * board.error_ms)
    check(latched(board) == 1 << 3 | 1 << 9, "error: on phase")
    try:
        board.led(1, "bright")
        check(False, "bad mode accepted")
    except ValueError:
        pass
    board.buzzer(True)
    pwm = m.pwms[-1]
    check(pwm.pin == board.pins["buzzer"] and pwm.freq == board.buzzer_hz, "buzzer PWM")
    check(pwm.duty == 32768, "buzzer on")
    board.buzzer(False)
    check(pwm.duty == 0, "buzzer off")


def common(board):
    p = board.pins
    for s in ("modem_pwrkey", "modem_reset", "modem_dtr"):
        check((p[s], 0) in m.writes, s + " held inactive")
    check(board.reset_cause() == "power_on", "power on")
    check(board.gnss_stream() is not None, "gnss stream")
    check(m.uarts[-1] == board.gnss_uart + (p["gnss_tx"], p["gnss_rx"]), "gnss uart")
    board.open_modem_uart()
    check(m.uarts[-1] == board.modem_uart + (p["modem_tx"], p["modem_rx"]), "modem uart")
    check(not board.ignition_on(), "ignition off: input high")
    m.levels[p["ignition_sense"]] = 0
    check(board.ignition_on(), "ignition on: input low")
    check(board.rtc_time() > 1e9, "Unix seconds")
    s = p["supply_sense"]
    check(m.ADC.made[s] == m.ADC.ATTN_11DB, "supply ADC at 11 dB")
    m.ADC.uv[s] = 804255  # 12.6 V through 220 kΩ over 15 kΩ
    check(board.supply_volts() == 12.6, "supply 12.6 V: %r" % board.supply_volts())
    m.ADC.uv[s] = 1787234  # 28.0 V
    check(board.supply_volts() == 28.0, "supply 28.0 V: %r" % board.supply_volts())
    leds_and_buzzer(board)


def test_s3():
    m.writes[:] = []
    board = ESP32S3SIM7600M8N_R1()
    common(board)
    k3 = board.pins["key_3"]
    check(m.made[k3] == (m.Pin.IN, m.Pin.PULL_UP), "keys pulled up")
    check(not board.key(3), "released")
    m.levels[k3] = 0
    check(board.key(3) and not board.key(2), "key 3 down (active low)")


def test_ec25():
    m.writes[:] = []
    board = ESP32EC25_R1()
    common(board)
    regs, a = m.I2C.regs, board.mcp23017_address
    check((regs[(a, 0)], regs[(a, 1)]) == (0x7F, 0x7F), "inputs but GPA7/GPB7")
    check((regs[(a, 0x0C)], regs[(a, 0x0D)]) == (0x7F, 0x7F), "pull-ups on the inputs")
    check(not any(board.key(n) for n in range(10)), "all released")
    regs[(a, 0x12)], regs[(a, 0x13)] = 0xFF & ~(1 << 2), 0xFF & ~1
    time.sleep_ms(board.expander_cache_ms + 5)
    check([n for n in range(10) if board.key(n)] == [2, 7], "GPA2 and GPB0 down")
    m.I2C.fail = True
    time.sleep_ms(board.expander_cache_ms + 5)
    check(not board.key(2) and board.io_errors == 1, "expander gone: released, counted")
    m.I2C.fail = False


def test_reset_causes():
    causes = ((m.WDT_RESET, "watchdog"), (m.HARD_RESET, "crash"), (m.SOFT_RESET, "soft"), (0, "unknown"))
    for cause, name in causes:
        m.writes[:] = []  # each board clears its chain; the log need not grow
        m.cause = cause
        check(ESP32S3SIM7600M8N_R1().reset_cause() == name, name)
    m.cause = m.PWRON_RESET


class Unit:
    ok = True

    def healthy(self):
        return self.ok


def run_board(board, unit):
    try:
        asyncio.run(asyncio.wait_for_ms(board.run(unit), 300))
    except asyncio.TimeoutError:
        pass
    return m.wdts[-1]


def test_run():
    m.writes[:] = []
    board = ESP32S3SIM7600M8N_R1()
    m.writes[:] = []
    wdt = run_board(board, Unit())
    check(wdt.timeout == board.wdt_ms and wdt.fed >= 3, "watchdog started and fed")
    check(any(n == board.pins["status_led"] for n, v in m.writes), "heartbeat")
    sick = Unit()
    sick.ok = False
    check(run_board(ESP32S3SIM7600M8N_R1(), sick).fed == 0, "a hung task: the watchdog is not fed")
