# The esp32 port's machine module as far as ESP32Board uses it; records what it drives.
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
cause = PWRON_RESET
levels = {}  # GPIO -> level an input reads; 1 (pulled up) if absent
writes = []  # (GPIO, level) in order
made = {}  # GPIO -> (mode, pull)
pwms, uarts, wdts = [], [], []


def reset_cause():
    return cause


class Pin:
    IN, OUT, PULL_UP = 1, 3, 2

    def __init__(self, n, mode=-1, pull=None, value=None):
        self.n = n
        if mode != -1:
            made[n] = (mode, pull)
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return levels.get(self.n, 1)
        writes.append((self.n, 1 if v else 0))


class PWM:
    def __init__(self, pin, freq=0, duty_u16=0):
        self.pin, self.freq, self.duty = pin.n, freq, duty_u16
        pwms.append(self)

    def duty_u16(self, d):
        self.duty = d


class UART:
    def __init__(self, uid, baudrate=0, tx=None, rx=None, rxbuf=0, timeout=0):
        uarts.append((uid, baudrate, tx, rx))


class I2C:
    regs = {}  # (address, register) -> byte
    fail = False

    def __init__(self, uid, scl=None, sda=None, freq=0):
        self.freq = freq

    def writeto_mem(self, addr, reg, buf):
        if I2C.fail:
            raise OSError(19)
        for i, b in enumerate(buf):
            I2C.regs[(addr, reg + i)] = b

    def readfrom_mem_into(self, addr, reg, buf):
        if I2C.fail:
            raise OSError(19)
        for i in range(len(buf)):
            buf[i] = I2C.regs.get((addr, reg + i), 0xFF)


class ADC:
    ATTN_11DB = 3
    uv = {}  # GPIO -> microvolts at the pin
    made = {}  # GPIO -> attenuation

    def __init__(self, pin, atten=None):
        self.n = pin.n
        ADC.made[self.n] = atten

    def read_uv(self):
        return ADC.uv.get(self.n, 0)


class WDT:
    def __init__(self, timeout=0):
        self.timeout, self.fed = timeout, 0
        wdts.append(self)

    def feed(self):
        self.fed += 1
