# An asyncio AT-command driver for the unit's LTE modem: SIMCom SIM7600 (build a) and
# Quectel EC25 (build b). Power-up, SIM and PIN, network registration, signal, APN, a
# packet data session, and re-registration with backoff after the network is lost.
# Hardware is passed in: a stream pair and optional pin callables; no `machine` here.
#
# How a board uses it (the board names the model: `board.modem` is "SIM7600" or "EC25"):
#
#     uart = board.open_modem_uart()
#     stream = asyncio.StreamReader(uart)          # one Stream reads and writes
#     pwrkey = Pin(board.pins["modem_pwrkey"], Pin.OUT, value=0)
#     modem = MODELS[board.modem](stream, stream, pwrkey=pwrkey)
#     await modem.start(pin=cfg_pin)               # ModemError: no_sim, pin_wrong, ...
#     await modem.register(120000)                 # ModemError: registration_denied, ...
#     await modem.set_apn("internet")
#     await modem.connect_data(handoff=True)       # CONNECT: the UART now carries PPP
#     ppp = network.PPP(uart); ppp.active(True); ppp.connect()
#     asyncio.create_task(modem.supervise(link_up=ppp.isconnected, on_change=changed))
#     ... modem.telemetry()                        # rssi_dbm, reg, operator, model, ...
#
# Data session. `connect_data()` dials (ATD*99#) and returns on CONNECT. With
# handoff=True the driver stops reading the UART right after the CONNECT line, so that
# network.PPP (ESP32) owns it; the caller reports the end of PPP through `link_up` (polled
# by supervise) or calls `hangup()` after `ppp.disconnect()`. Without handoff the driver
# keeps reading and sees NO CARRIER itself: that is how the unix port runs it against the
# simulator, where the unit's data path is the host's sockets. `open_tcp()` uses the
# modem's own TCP stack in transparent mode instead of PPP and returns the stream pair,
# which then carries the TCP bytes until `hangup()`.
#
# Pins: `pwrkey(1)` presses the key (on the reference boards a GPIO high pulls PWRKEY low
# through an NPN), `pwrkey(0)` releases it; `reset` likewise. A machine.Pin is callable
# that way. Without pins the modem is assumed powered (the simulator, a bench supply).
#
# Lines from the modem are read by one task and routed: final result codes (OK, ERROR,
# +CME ERROR, CONNECT, NO CARRIER) to the one command waiting, information lines with its
# prefix to it, everything else to the URC handlers (registration, RDY, NO CARRIER in a
# data session). Every command has a time-out (ModemError "timeout"). Link faults are
# ModemError (an OSError) with a `reason`; bad arguments are ValueError.
import asyncio
import time

# <stat> of +CREG/+CGREG/+CEREG (3GPP TS 27.007 7.2): its name in telemetry. 0 is "not
# registered and not searching", 4 "unknown": both report as "unknown".
REG_NAMES = {0: "unknown", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}
# <AcT> of +COPS (27.007 7.3)
ACT_NAMES = {0: "2g", 1: "2g", 2: "3g", 3: "2g", 4: "3g", 5: "3g", 6: "3g", 7: "lte", 8: "2g", 9: "nb-iot"}
# +CME ERROR codes (27.007 9.2) that have a reason of their own, and their verbose texts
CME_REASONS = {
    10: "no_sim",
    11: "pin_required",
    12: "puk_required",
    13: "sim_failure",
    14: "sim_busy",
    15: "sim_failure",
    16: "pin_wrong",
}
CME_TEXTS = (
    ("sim not inserted", 10),
    ("sim pin required", 11),
    ("sim puk required", 12),
    ("sim failure", 13),
    ("sim busy", 14),
    ("sim wrong", 15),
    ("incorrect password", 16),
)
CALL_ENDS = ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")
DATA_ENDS = ("NO CARRIER", "CLOSED")  # CLOSED: SIM7600 transparent socket closed by peer


class ModemError(OSError):
    """A fault on the modem link. `reason`: timeout, error, cme_error, bad_answer, no_sim,
    pin_required, pin_wrong, puk_required, sim_failure, sim_busy, registration_denied,
    registration_timeout, no_carrier, connect_failed. `detail`: the command or code."""

    def __init__(self, reason, detail=None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


# parsing: pure functions of one line (str without CR LF)
def rssi_dbm(csq):
    """dBm of a +CSQ <rssi>: 0..31 is -113..-51 dBm in 2 dB steps, 100..191 (the extended
    range of SIMCom and Quectel) -116..-25 dBm; 99 and anything else: None (unknown)."""
    if 0 <= csq <= 31:
        return -113 + 2 * csq
    if 100 <= csq <= 191:
        return csq - 216
    return None


def _after_colon(line):
    i = line.find(":")
    if i < 0:
        raise ValueError("no ':' in " + line)
    return line[:i], line[i + 1 :].strip()


def parse_csq(line):
    """(rssi, ber) of '+CSQ: <rssi>,<ber>'."""
    name, rest = _after_colon(line)
    fields = rest.split(",")
    if name != "+CSQ" or len(fields) != 2:
        raise ValueError("not +CSQ: " + line)
    return int(fields[0]), int(fields[1])


def parse_reg(line):
    """(name, stat) of a +CREG/+CGREG/+CEREG line, or None. A read response carries <n>
    first ('+CREG: 0,1', '+CEREG: 2,5,"00C3",...'); a URC starts with <stat> ('+CREG: 1',
    '+CEREG: 1,"00C3",...'): the second field is a bare number only in a read response."""
    i = line.find(":")
    name = line[:i]
    if name != "+CREG" and name != "+CGREG" and name != "+CEREG":
        return None
    fields = line[i + 1 :].split(",")
    try:
        if len(fields) > 1 and fields[1].strip().isdigit():
            return name, int(fields[1])
        return name, int(fields[0])
    except ValueError:
        return None


def parse_cops(line):
    """(operator, act name) of '+COPS: 0,0,"Telkomsel",7'; (None, None) when there is no
    operator ('+COPS: 0')."""
    q1 = line.find('"')
    q2 = line.find('"', q1 + 1)
    if q1 < 0 or q2 < 0:
        return None, None
    act = line[q2 + 1 :].strip(", ")
    return line[q1 + 1 : q2], ACT_NAMES.get(int(act)) if act.isdigit() else None


def parse_ati(lines):
    """(model, firmware) from ATI: SIMCom answers 'Model: SIMCOM_SIM7600E-H', 'Revision:
    ...'; Quectel 'Quectel', 'EC25', 'Revision: ...' (maker and model on lines of their own)."""
    model = firmware = None
    bare = []
    for line in lines:
        if line[:6] == "Model:":
            model = line[6:].strip()
            if model[:7] == "SIMCOM_":
                model = model[7:]
        elif line[:9] == "Revision:":
            firmware = line[9:].strip()
        elif ":" not in line:
            bare.append(line)
    if model is None and len(bare) > 1:
        model = bare[1]
    return model, firmware


def cme_reason(text):
    """(reason, code) of what follows '+CME ERROR:', numeric (AT+CMEE=1) or verbose."""
    text = text.strip()
    if text.isdigit():
        code = int(text)
    else:
        code = None
        low = text.lower()
        for words, n in CME_TEXTS:
            if low == words:
                code = n
        if code is None:
            return "cme_error", text
    return CME_REASONS.get(code, "cme_error"), code


def _check_text(value, what, most=64):
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > most or '"' in value or "\r" in value or "\n" in value:
        raise ValueError("bad " + what)
    return value


class _Pending:
    # One command waiting for its final result code. kind: None (OK ends it), "connect"
    # (CONNECT ends it), "handoff" (CONNECT ends it and the line reader stops: the UART
    # belongs to the caller), "hangup" (NO CARRIER counts as success).
    def __init__(self, cmd, prefix, kind):
        self.cmd = cmd
        self.prefix = prefix
        self.kind = kind
        self.lines = []
        self.result = None
        self.error = None
        self.done = asyncio.Event()


class ATModem:
    model = "AT"
    # time-outs and delays (ms); class attributes, so a board or a test may set its own
    command_ms = 3000  # a command's final result code
    probe_ms = 500  # "AT" while waiting for the modem to answer
    boot_ms = 30000  # power-up until the modem answers AT
    reg_poll_ms = 2000  # between registration polls
    dial_ms = 30000  # ATD / socket open until CONNECT
    guard_ms = 1000  # silence before and after "+++" (S12 default: 50 x 20 ms)
    sim_retry_ms = 1000  # SIM busy, or not ready right after the PIN
    idle_ms = 20  # the line reader's pause when a read returned nothing
    pwrkey_on_ms = 500
    pwrkey_off_ms = 2500
    reset_ms = 300
    sim_tries = 5
    restart_after = 4  # failed recoveries in a row before the modem is restarted
    line_max = 256  # longer lines are dropped and counted in `discards`
    lines_max = 16  # information lines kept per command
    # what differs between models, as data
    reg_commands = ("+CEREG", "+CGREG", "+CREG")  # EPS (LTE), GPRS, circuit-switched
    apn_commands = ('AT+CGDCONT=1,"IP","%(apn)s"',)
    auth_commands = ()  # sent when a user name is given
    dial_command = "ATD*99#"  # or 'AT+CGDATA="PPP",1'
    power_off_command = None
    gnss_commands = ()  # after each power-up
    gnss_provision_commands = ()  # once, by provisioning (saved in the modem)
    tcp_open_commands = ()  # (command, URC that confirms it or None), before the socket
    tcp_socket_command = None  # % (host, port): transparent mode, answers CONNECT
    tcp_close_commands = ()

    def __init__(self, reader, writer, pwrkey=None, reset=None):
        self._reader = reader
        self._writer = writer
        self.pwrkey = pwrkey
        self.reset = reset
        self.on_urc = None  # callback(line) for URCs the driver does not handle itself
        self.state = "off"  # off, command, data
        self.sim = None  # +CPIN state: READY, SIM PIN, ...
        self.rssi_dbm = None
        self.ber = None
        self.operator = None
        self.act = None
        self.modem_model = None
        self.firmware = None
        self.gnss = None
        self.apn = None
        self.losses = 0  # network losses seen
        self.last_loss = None
        self.last_error = None
        self.discards = 0  # lines dropped: too long, undecodable, stray, over lines_max
        self.urcs = 0  # URCs nobody handled
        self.boots = 0  # RDY seen: the modem (re)started
        self._regs = {}  # +CREG/+CGREG/+CEREG -> last <stat>
        self._unsupported = []
        self._pin = None
        self._dial = None  # what to redial after a loss: ("ppp", handoff) or ("tcp", host, port)
        self._redial = True  # False: the TCP connection's owner opens it again itself
        self._pending = None
        self._waiter = None  # [prefix, line, Event]: a URC a command waits for
        self._partial = b""
        self._task = None
        self._stop = False
        self._lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._lost_reason = None
        self._recovering = False
        self._need_start = False

    # the line reader
    def _ensure_reader(self):
        if self._task is None:
            self._stop = False
            self._task = asyncio.create_task(self._read_loop())

    async def _read_loop(self):
        try:
            while not self._stop:
                try:
                    chunk = await self._reader.readline()
                except OSError as e:
                    self.last_error = "read: %s" % e
                    await asyncio.sleep_ms(100)
                    continue
                if chunk:
                    self._take(chunk)
                else:
                    await asyncio.sleep_ms(self.idle_ms)
        finally:
            self._task = None

    def _take(self, chunk):
        if chunk[-1:] != b"\n":  # part of a line (the read returned what was there)
            if len(self._partial) + len(chunk) > self.line_max:
                self._partial = b""
                self.discards += 1
            else:
                self._partial += chunk
            return
        if self._partial:
            chunk = self._partial + chunk
            self._partial = b""
        if len(chunk) > self.line_max:
            self.discards += 1
            return
        try:
            line = chunk.decode().strip()
        except UnicodeError:
            self.discards += 1
            return
        if line:
            self.route(line)

    def route(self, line):
        """Handle one line from the modem (public so tests can feed lines)."""
        if line[:2] == "AT" or line == "+++":
            return  # our own command, echoed until ATE0
        p = self._pending
        if self._final(line, p):
            return
        if line in DATA_ENDS:
            self._data_ended(line)
            return
        reg = parse_reg(line)
        if reg is not None:
            self._set_reg(reg[0], reg[1])
        if p is not None and p.prefix is not None and line[: len(p.prefix)] == p.prefix:
            if len(p.lines) < self.lines_max:
                p.lines.append(line)
            else:
                self.discards += 1
        elif reg is None:
            self._urc(line)

    def _final(self, line, p):
        error = None
        if line == "OK":
            if p is not None and (p.kind == "connect" or p.kind == "handoff"):
                self.discards += 1  # a dial ends in CONNECT or a failure, never OK
                return True
        elif line[:7] == "CONNECT":
            if p is None or p.kind is None or p.kind == "hangup":
                self.discards += 1
                return True
            if line == "CONNECT FAIL":
                error = ModemError("connect_failed", p.cmd)
            p.result = line
            if p.kind == "handoff" and not error:
                self._stop = True  # read nothing after CONNECT: the bytes are the caller's
        elif line == "ERROR":
            error = ModemError("error", p.cmd if p else None)
        elif line[:11] == "+CME ERROR:" or line[:11] == "+CMS ERROR:":
            reason, code = cme_reason(line[11:])
            error = ModemError(reason, code)
        elif line in CALL_ENDS and p is not None and p.kind is not None:
            if p.kind != "hangup":
                error = ModemError("no_carrier", line)
        else:
            return False
        if p is None:
            self.discards += 1  # a final for nobody: the answer to a command that timed out
            return True
        p.error = error
        self._pending = None
        p.done.set()
        return True

    def _urc(self, line):
        if line == "RDY":
            self.boots += 1
            if self.state != "off":  # the modem restarted on its own: SIM, echo, all reset
                self.state = "off"
                self._need_start = True
                self._lose("modem_restart")
        elif line[:6] == "+CPIN:":
            self.sim = line[6:].strip()
        w = self._waiter
        if w is not None and line[: len(w[0])] == w[0]:
            w[1] = line
            w[2].set()
            return
        self.urcs += 1
        if self.on_urc is not None:
            self.on_urc(line)

    def _data_ended(self, line):
        if self.state == "data":
            self.state = "command"
            self._lose("no_carrier")
        else:
            self.discards += 1

    def _set_reg(self, name, stat):
        was = self.registered
        self._regs[name] = stat
        if was and not self.registered:
            self._lose("deregistered")

    def _lose(self, reason):
        if self._recovering:
            return
        if self._lost_reason is None:
            self._lost_reason = reason
        self._lost.set()

    # commands
    async def _write(self, data):
        w = self._writer
        w.write(data.encode() if isinstance(data, str) else data)
        if hasattr(w, "drain"):
            await w.drain()

    async def _request(self, cmd, data, timeout_ms, prefix=None, kind=None):
        async with self._lock:
            self._ensure_reader()
            p = _Pending(cmd, prefix, kind)
            self._pending = p
            try:
                await self._write(data)
                await asyncio.wait_for_ms(p.done.wait(), timeout_ms)
            except asyncio.TimeoutError:
                raise ModemError("timeout", cmd)
            finally:
                if self._pending is p:
                    self._pending = None
        if p.error is not None:
            raise p.error
        return p.result if kind == "connect" or kind == "handoff" else p.lines

    async def command(self, cmd, timeout_ms=0, prefix=None):
        """Send `cmd` (without CR) and wait for its final result code. Returns the
        information lines that start with `prefix` ("" for all of them)."""
        return await self._request(cmd, cmd + "\r", timeout_ms or self.command_ms, prefix)

    async def _command_urc(self, cmd, urc):
        # a command whose outcome comes later as a URC (SIM7600 AT+NETOPEN -> +NETOPEN: 0)
        if urc is None:
            await self.command(cmd)
            return
        prefix = urc[: urc.find(":") + 1]
        w = self._waiter = [prefix, None, asyncio.Event()]
        try:
            await self.command(cmd)
            await asyncio.wait_for_ms(w[2].wait(), self.dial_ms)
        except asyncio.TimeoutError:
            raise ModemError("timeout", urc)
        finally:
            self._waiter = None
        if w[1] != urc:
            raise ModemError("connect_failed", w[1])

    async def _tolerant(self, cmd):
        # a command a modem may refuse without harm; a time-out is still a link fault
        try:
            await self.command(cmd)
            return None
        except ModemError as e:
            if e.reason == "timeout":
                raise
            return e

    # power
    async def _press(self, pin, ms):
        pin(1)
        await asyncio.sleep_ms(ms)
        pin(0)

    async def power_on(self):
        """Press PWRKEY for `pwrkey_on_ms`; False without a PWRKEY pin."""
        if self.pwrkey is None:
            return False
        await self._press(self.pwrkey, self.pwrkey_on_ms)
        return True

    async def power_off(self):
        """The model's power-off command; PWRKEY held for `pwrkey_off_ms` if that fails."""
        try:
            if not self.power_off_command:
                raise ModemError("error")
            await self.command(self.power_off_command)
        except ModemError:
            if self.pwrkey is not None:
                await self._press(self.pwrkey, self.pwrkey_off_ms)
        self.state = "off"

    async def restart(self):
        """Reset the modem: RESET pin, else PWRKEY off and on, else AT+CFUN=1,1."""
        self.state = "off"
        self._need_start = True  # even if the reset command goes unanswered
        if self.reset is not None:
            await self._press(self.reset, self.reset_ms)
        elif self.pwrkey is not None:
            await self.power_off()
            await asyncio.sleep_ms(self.pwrkey_off_ms)
            await self.power_on()
        else:
            await self._tolerant("AT+CFUN=1,1")

    async def _probe(self):
        try:
            await self.command("AT", self.probe_ms)
            return True
        except ModemError as e:
            return e.reason != "timeout"  # ERROR: something answered

    async def _wait_ready(self):
        deadline = time.ticks_add(time.ticks_ms(), self.boot_ms)
        while time.ticks_diff(deadline, time.ticks_ms()) > 0:
            if await self._probe():
                return
        raise ModemError("timeout", "AT")

    async def start(self, pin=None):
        """Power up if the modem does not answer (PWRKEY), echo off, numeric errors, SIM
        (sending `pin` when the SIM asks for it, once: a wrong PIN is never retried),
        registration URCs on, ATI, model set-up (EC25: GNSS on)."""
        if pin is not None:
            if not isinstance(pin, str) or not 4 <= len(pin) <= 8 or not pin.isdigit():
                raise ValueError("SIM PIN must be 4-8 digits")
            self._pin = pin
        self.state = "off"
        self._regs = {}
        if not await self._probe():
            await self.power_on()
            await self._wait_ready()
        await self.command("ATE0")
        await self._tolerant("AT+CMEE=1")
        await self._unlock_sim()
        for name in self.reg_commands:
            await self._tolerant("AT%s=1" % name)
        await self.identify()
        for cmd in self.gnss_commands:
            e = await self._tolerant(cmd)
            self.gnss = "on" if e is None or e.detail == 504 else "error"  # 504: already on
        self.state = "command"
        self._need_start = False

    async def _unlock_sim(self):
        sent = False
        for _ in range(self.sim_tries):
            try:
                lines = await self.command("AT+CPIN?", prefix="+CPIN:")
            except ModemError as e:
                if e.reason != "sim_busy":
                    raise
                await asyncio.sleep_ms(self.sim_retry_ms)
                continue
            self.sim = lines[0][6:].strip() if lines else None
            if self.sim == "READY":
                return
            if self.sim == "SIM PUK":
                raise ModemError("puk_required")
            if self.sim == "SIM PIN" and not sent:
                if not self._pin:
                    raise ModemError("pin_required")
                sent = True  # sent once: three wrong PINs lock the SIM
                await self._request("AT+CPIN=<pin>", 'AT+CPIN="%s"\r' % self._pin, self.command_ms)
                continue
            await asyncio.sleep_ms(self.sim_retry_ms)
        raise ModemError("sim_failure", self.sim)

    async def identify(self):
        self.modem_model, self.firmware = parse_ati(await self.command("ATI", prefix=""))

    async def provision_gnss(self):
        """Once per module (saved in it): route GNSS NMEA where the board reads it."""
        for cmd in self.gnss_provision_commands:
            await self.command(cmd)

    # network
    @property
    def registered(self):
        return self.reg_stat() in (1, 5)

    @property
    def reg(self):
        return REG_NAMES.get(self.reg_stat(), "unknown")

    def reg_stat(self):
        """One <stat> over all domains: registered beats searching beats denied."""
        stats = self._regs.values()
        for stat in (1, 5, 2, 3, 0):
            if stat in stats:
                return stat
        return 4

    async def poll_registration(self):
        for name in self.reg_commands:
            if name in self._unsupported:
                continue
            e = await self._tolerant("AT%s?" % name)
            if e is not None and e.reason == "error":
                self._unsupported.append(name)  # the modem does not know this domain
        return self.reg_stat()

    async def register(self, timeout_ms=60000):
        """Poll until registered (home or roaming); returns "home" or "roaming". Searching
        keeps waiting; denied raises ModemError("registration_denied")."""
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            stat = await self.poll_registration()
            if stat == 1 or stat == 5:
                return self.reg
            if stat == 3:
                raise ModemError("registration_denied")
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise ModemError("registration_timeout", self.reg)
            await asyncio.sleep_ms(self.reg_poll_ms)

    async def signal(self):
        """{"rssi_dbm": dBm or None, "ber": 0-7 or None, "csq": raw} from AT+CSQ."""
        lines = await self.command("AT+CSQ", prefix="+CSQ:")
        try:
            csq, ber = parse_csq(lines[0])
        except (ValueError, IndexError):
            raise ModemError("bad_answer", lines[0] if lines else "AT+CSQ")
        self.rssi_dbm = rssi_dbm(csq)
        self.ber = ber if 0 <= ber <= 7 else None
        return {"rssi_dbm": self.rssi_dbm, "ber": self.ber, "csq": csq}

    async def read_operator(self):
        try:
            lines = await self.command("AT+COPS?", prefix="+COPS:")
        except ModemError as e:
            if e.reason == "timeout":
                raise
            lines = []  # refused (+CME ERROR: 30, no network service): no operator
        self.operator, self.act = parse_cops(lines[0]) if lines else (None, None)
        return self.operator

    async def refresh(self):
        """Poll signal, registration and operator (in command mode); returns telemetry()."""
        await self.signal()
        await self.poll_registration()
        if self.registered:
            await self.read_operator()
        return self.telemetry()

    async def set_apn(self, apn, user=None, password=None):
        values = {
            "apn": _check_text(apn, "APN"),
            "user": _check_text(user, "user"),
            "password": _check_text(password, "password"),
            "auth": 1 if user else 0,  # PAP with a user name, else none
        }
        # the format is the command's name in errors: no password in a log
        for fmt in self.apn_commands + (self.auth_commands if user else ()):
            await self._request(fmt, fmt % values + "\r", self.command_ms)
        self.apn = apn

    async def connect_data(self, handoff=False):
        """Dial the packet data call; returns the CONNECT line. handoff=True: the driver
        reads nothing more from the UART, which now carries PPP (network.PPP on the ESP32)
        until `hangup()`."""
        cmd = self.dial_command
        result = await self._request(cmd, cmd + "\r", self.dial_ms, kind="handoff" if handoff else "connect")
        self.state = "data"
        self._dial = ("ppp", handoff)
        return result

    async def open_tcp(self, host, port, redial=True):
        """A TCP connection on the modem's own stack, transparent mode: returns the
        (reader, writer) pair, which carries the connection's bytes until `hangup()`.
        redial=False: after a network loss supervise() re-registers but does not open the
        connection again (its owner, e.g. an MQTT client, does that)."""
        _check_text(host, "host", 128)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("bad port")
        if self.tcp_socket_command is None:
            raise ValueError(self.model + " has no TCP stack here")
        for cmd, urc in self.tcp_open_commands:
            await self._command_urc(cmd, urc)
        cmd = self.tcp_socket_command % (host, port)
        await self._request(cmd, cmd + "\r", self.dial_ms, kind="handoff")
        self.state = "data"
        self._dial = ("tcp", host, port)
        self._redial = redial
        return self._reader, self._writer

    async def _leave_data(self):
        if self.state == "data":
            await asyncio.sleep_ms(self.guard_ms)
            try:
                await self._request("+++", "+++", 2 * self.guard_ms + self.command_ms)
            except ModemError:
                await self._write("\r")  # already in command mode: end the stray "+++"
        kind = self._dial[0] if self._dial else "ppp"
        for cmd in self.tcp_close_commands if kind == "tcp" else ("ATH",):
            try:
                await self._request(cmd, cmd + "\r", self.command_ms, kind="hangup")
            except ModemError as e:
                if e.reason == "timeout":
                    raise
        self.state = "command"

    async def hangup(self):
        """End the data session: "+++" between guard times, then ATH (or close the
        socket). After a handoff the caller has stopped using the UART first."""
        await self._leave_data()
        self._dial = None

    # supervision
    def lost(self, reason="link_down"):
        """Report a lost link from outside (e.g. the PPP owner)."""
        self._lose(reason)

    async def supervise(
        self,
        poll_ms=30000,
        register_ms=120000,
        backoff_ms=2000,
        max_backoff_ms=120000,
        link_up=None,
        on_change=None,
    ):
        """Never returns. Watches for a lost network (registration URCs, NO CARRIER, a
        failed or unregistered poll every `poll_ms` in command mode, `link_up()` false in
        a data session), then re-registers and redials with backoff. on_change(event,
        detail): ("lost", reason), then ("up", reg) once back."""
        while True:
            reason = await self._watch(poll_ms, link_up)
            self.losses += 1
            self.last_loss = reason
            self._recovering = True
            try:
                if on_change is not None:
                    on_change("lost", reason)
                await self._recover(register_ms, backoff_ms, max_backoff_ms)
            finally:
                self._recovering = False
                self._lost_reason = None
                self._lost.clear()
            if on_change is not None:
                on_change("up", self.reg)

    async def _watch(self, poll_ms, link_up):
        while self._lost_reason is None:
            self._lost.clear()
            try:
                await asyncio.wait_for_ms(self._lost.wait(), poll_ms)
                continue
            except asyncio.TimeoutError:
                pass
            if self.state == "data":
                if link_up is not None and not link_up():
                    return "link_down"
                continue
            try:
                await self.refresh()
            except OSError as e:
                return "poll_" + getattr(e, "reason", "error")
            if not self.registered:
                return "deregistered"
        return self._lost_reason

    async def _recover(self, register_ms, backoff_ms, max_backoff_ms):
        delay = backoff_ms
        failures = 0
        while True:
            try:
                if failures and failures % self.restart_after == 0:
                    await self.restart()
                await self._reconnect(register_ms)
                return
            except OSError as e:
                failures += 1
                self.last_error = getattr(e, "reason", "error")
                await asyncio.sleep_ms(delay)
                delay = min(2 * delay, max_backoff_ms)

    async def _reconnect(self, register_ms):
        if self._need_start:
            await self.start()
        elif self.state == "data":
            await self._leave_data()
        await self.register(register_ms)
        if self._dial is not None and self._dial[0] == "tcp":
            if self._redial:
                await self.open_tcp(self._dial[1], self._dial[2])
            else:
                self._dial = None
        elif self._dial is not None:
            await self.connect_data(self._dial[1])

    def telemetry(self):
        return {
            "rssi_dbm": self.rssi_dbm,
            "ber": self.ber,
            "reg": self.reg,
            "operator": self.operator,
            "act": self.act,
            "model": self.modem_model or self.model,
            "firmware": self.firmware,
            "state": self.state,
            "losses": self.losses,
            "discards": self.discards,
        }


class SIM7600(ATModem):
    # SIMCom SIM7500/SIM7600 Series AT Command Manual; timings: hardware/esp32s3-sim7600-m8n.md
    model = "SIM7600"
    pwrkey_on_ms = 500
    pwrkey_off_ms = 2500
    reset_ms = 2500
    auth_commands = ('AT+CGAUTH=1,%(auth)d,"%(password)s","%(user)s"',)  # SIMCom: password first
    power_off_command = "AT+CPOF"
    tcp_open_commands = (("AT+CIPMODE=1", None), ("AT+NETOPEN", "+NETOPEN: 0"))
    tcp_socket_command = 'AT+CIPOPEN=0,"TCP","%s",%d'
    tcp_close_commands = ("AT+CIPCLOSE=0", "AT+NETCLOSE")


class EC25(ATModem):
    # Quectel EC25 AT Commands Manual, TCP/IP and GNSS application notes; timings:
    # hardware/esp32-ec25.md (PWRKEY >= 500 ms on, >= 650 ms off; RESET_N 150-460 ms)
    model = "EC25"
    pwrkey_on_ms = 550  # under the 650 ms that would turn a running module off
    pwrkey_off_ms = 800
    reset_ms = 300
    apn_commands = (
        'AT+CGDCONT=1,"IP","%(apn)s"',
        'AT+QICSGP=1,1,"%(apn)s","%(user)s","%(password)s",%(auth)d',
    )
    power_off_command = "AT+QPOWD"
    gnss_commands = ("AT+QGPS=1",)
    gnss_provision_commands = ('AT+QGPSCFG="outport","uartdebug"',)
    tcp_open_commands = (("AT+QIACT=1", None),)
    tcp_socket_command = 'AT+QIOPEN=1,0,"TCP","%s",%d,0,2'
    tcp_close_commands = ("AT+QICLOSE=0", "AT+QIDEACT=1")


MODELS = {"SIM7600": SIM7600, "EC25": EC25}
