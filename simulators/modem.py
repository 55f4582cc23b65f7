"""A simulated LTE modem on a pty: answers AT commands as a SIMCom SIM7600 or a Quectel
EC25 would, for the firmware's modem driver (firmware/lib/modem.py) in the unix port.

    driver ──"AT+CSQ\\r"──> pty ──> ModemSimulator ──"\\r\\n+CSQ: 20,99\\r\\n\\r\\nOK\\r\\n"──> driver

Configurable: the model (its ATI and boot URCs), the SIM (ready, PIN required, not
inserted), registration (searching for N polls, then home, roaming or denied), the CSQ
value, forced error answers per command. It stores the APN, dials (ATD*99# ->
CONNECT 150000000, then data mode until "+++" between guard times), opens transparent
TCP sockets on the model's own commands (piped to a real socket), and `drop()` loses the
network: NO CARRIER in a data session, registration URCs, then searching for a few polls.
Every command line received is kept in `commands`. Command handlers are one table,
(name, kind) -> method, where kind is "" (execute), "?" (read), "=" (set) or "=?" (test).
"""

import csv
import os
import re
import select
import socket
import threading
import time
from functools import partial

from .ptys import raw_pty

MODELS = {
    "SIM7600": {
        "ati": [
            "Manufacturer: SIMCOM INCORPORATED",
            "Model: SIMCOM_SIM7600E-H",
            "Revision: SIM7600M22_V2.0.1",
            "IMEI: 861234560000001",
            "+GCAP: +CGSM",
        ],
        "boot": ["RDY", "+CPIN: {cpin}", "SMS DONE", "PB DONE"],
        "cmee": 0,
        "power_off": ("+CPOF", []),
        "closed": "CLOSED",  # transparent socket closed by the peer
    },
    "EC25": {
        "ati": ["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"],
        "boot": ["RDY", "+CFUN: 1", "+CPIN: {cpin}", "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"],
        "cmee": 1,
        "power_off": ("+QPOWD", ["POWERED DOWN"]),
        "closed": "NO CARRIER",
    },
}
REG_STAT = {"home": 1, "roaming": 5, "denied": 3, "searching": 2}
DOMAINS = ("+CREG", "+CGREG", "+CEREG")
CME_TEXT = {
    3: "operation not allowed",
    10: "SIM not inserted",
    16: "incorrect password",
    30: "no network service",
}
PIN_TRIES = 3


class CmeError(Exception):
    def __init__(self, code):
        self.code = code


class ModemSimulator:
    def __init__(
        self,
        model="SIM7600",
        sim="ready",  # ready, pin (needs `pin`), absent, puk
        pin="1234",
        reg="home",  # home, roaming, denied: where registration ends up
        searching_polls=0,  # registration reads per domain that answer "searching" first
        csq=20,
        ber=99,
        operator="Telkomsel",
        act=7,  # +COPS <AcT>: 7 = E-UTRAN
        guard_s=0.2,  # escape guard time (S12)
        errors=None,  # {"+CSQ": "ERROR" or "+CME ERROR: 30", ...}: forced answers
        mute=False,  # never answers: powered off, or a broken UART
        boot=True,  # send the power-up URCs (RDY, ...) at start
    ):
        if model not in MODELS:
            raise ValueError(f"unknown model {model}")
        self.model = model
        self.spec = MODELS[model]
        self.sim = sim
        self._sim_at_boot = sim
        self.pin = pin
        self.reg = reg
        self.csq, self.ber = csq, ber
        self.operator, self.act = operator, act
        self.guard_s = guard_s
        self.errors = dict(errors or {})
        self.mute = mute
        self.boot = boot
        self.commands = []  # every command line received
        self.apn = None
        self.auth = None
        self.pin_attempts = 0
        self.drops = 0
        self.echo = True
        self.cmee = self.spec["cmee"]
        self.urc_n = dict.fromkeys(DOMAINS, 0)  # AT+CREG=<n>: 0 no URCs, 1 stat, 2 with location
        self.searching = dict.fromkeys(DOMAINS, searching_polls)
        self.mode = "command"  # command, data
        self.call = None  # None, "ppp", "tcp": a call up (in data mode, or escaped with +++)
        self.gnss = False
        self.tcp_mode = 0  # SIM7600 AT+CIPMODE
        self.net_open = False
        self.sock = None
        self.tcp_up = self.tcp_down = 0  # bytes piped to and from TCP sockets
        self.tcp_opened = 0  # TCP connections opened on the modem's own stack
        self._due = []  # URCs to send after the current command's final OK
        self._line = bytearray()
        self._last_rx = 0.0
        self._plus = 0
        self._escape_at = None
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._thread = None
        self.master = self._slave = None
        self.path = None
        self.table = {
            ("", ""): self.at,
            ("E", ""): self.echo_set,
            ("I", ""): self.ati,
            ("H", ""): self.hang_up,
            ("D", ""): self.dial,
            ("O", ""): self.online,
            ("+CMEE", "="): self.cmee_set,
            ("+CPIN", "?"): self.cpin_read,
            ("+CPIN", "="): self.cpin_set,
            ("+CSQ", ""): self.csq_exec,
            ("+COPS", "?"): self.cops_read,
            ("+CGDCONT", "="): self.cgdcont_set,
            ("+CGDATA", "="): self.cgdata_set,
            ("+CFUN", "="): self.cfun_set,
        }
        for domain in DOMAINS:
            self.table[(domain, "?")] = partial(self.reg_read, domain)
            self.table[(domain, "=")] = partial(self.reg_set, domain)
        if model == "SIM7600":
            self.table.update(
                {
                    ("+CGAUTH", "="): self.cgauth_set,
                    ("+CPOF", ""): self.power_off,
                    ("+CIPMODE", "="): self.cipmode_set,
                    ("+NETOPEN", ""): self.netopen,
                    ("+NETCLOSE", ""): self.netclose,
                    ("+CIPOPEN", "="): self.tcp_open,
                    ("+CIPCLOSE", "="): self.tcp_close,
                }
            )
        else:
            self.table.update(
                {
                    ("+QICSGP", "="): self.qicsgp_set,
                    ("+QPOWD", ""): self.power_off,
                    ("+QGPS", "="): self.qgps_set,
                    ("+QGPSCFG", "="): self.at,
                    ("+QIACT", "="): self.qiact_set,
                    ("+QIDEACT", "="): self.qideact_set,
                    ("+QIOPEN", "="): self.tcp_open,
                    ("+QICLOSE", "="): self.tcp_close,
                }
            )

    # life cycle
    def start(self):
        self.master, self._slave, self.path = raw_pty()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"modem-{self.model}")
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        for fd in (self.master, self._slave):
            if fd is not None:
                os.close(fd)
        self.master = self._slave = None
        if self.sock is not None:
            self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        if self.boot and not self.mute:
            self._boot()
        while not self._stop.is_set():
            fds = [self.master] + ([self.sock] if self.sock is not None and self.mode == "data" else [])
            ready, _, _ = select.select(fds, [], [], 0.02)
            with self._lock:
                if self.master in ready:
                    try:
                        data = os.read(self.master, 4096)
                    except OSError:
                        data = b""
                    for byte in data:
                        self._feed(byte, time.monotonic())
                if self.sock is not None and self.sock in ready:
                    self._from_socket()
                self._tick(time.monotonic())

    def _boot(self):
        cpin = {"ready": "READY", "pin": "SIM PIN", "puk": "SIM PUK"}.get(self.sim)
        for line in self.spec["boot"]:
            if "{cpin}" in line and cpin is None:
                continue
            self.send(line.format(cpin=cpin))

    # output
    def _out(self, data):
        if self.master is not None and not self.mute:
            try:
                os.write(self.master, data)
            except OSError:
                pass

    def send(self, line):
        """One line from the modem, framed as with ATV1: CR LF line CR LF."""
        self._out(b"\r\n" + line.encode() + b"\r\n")

    # input
    def _feed(self, byte, now):
        if self.mode == "data":
            self._feed_data(byte, now)
        else:
            self._feed_command(byte)
        self._last_rx = now

    def _feed_command(self, byte):
        if self.echo:
            self._out(bytes([byte]))
        if byte == 0x0D:
            line = self._line.decode(errors="replace").strip()
            self._line.clear()
            if line[:2].upper() == "AT":
                self.commands.append(line)
                self._command(line[2:])
        elif byte != 0x0A and len(self._line) < 1024:
            self._line.append(byte)

    def _feed_data(self, byte, now):
        # "+++" escapes only with guard-time silence before it and after it
        if byte == ord("+") and (self._plus or now - self._last_rx >= self.guard_s) and self._plus < 3:
            self._plus += 1
            self._escape_at = now if self._plus == 3 else None
            return
        pending, self._plus, self._escape_at = b"+" * self._plus, 0, None
        if self.sock is not None:
            data = pending + bytes([byte])
            self.tcp_up += len(data)
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the peer is gone: _from_socket sees it and ends the call

    def _tick(self, now):
        if (
            self._escape_at is not None
            and now - self._escape_at >= self.guard_s
            and now - self._last_rx >= self.guard_s
        ):
            self._plus, self._escape_at = 0, None
            self.mode = "command"
            self.send("OK")

    def _from_socket(self):
        try:
            data = self.sock.recv(4096)
        except OSError:
            data = b""
        if data:
            self.tcp_down += len(data)
            self._out(data)
            return
        self._close_socket()
        self.call, self.mode = None, "command"
        self.send(self.spec["closed"])

    def _close_socket(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # commands
    def _command(self, body):
        name, kind, args = parse_command(body)
        handler = self.table.get((name, kind))
        forced = self.errors.get(name)
        if forced is not None:
            self.send(forced)
        elif handler is None:
            self.send("ERROR")
        else:
            try:
                lines, final = handler(args)
            except CmeError as e:
                self.send(self._cme(e.code))
                return
            except (ValueError, IndexError):  # malformed arguments
                self.send("ERROR")
                return
            for line in lines:
                self.send(line)
            if final:
                self.send(final)
            if final == "OK":
                self._after_ok()

    def _cme(self, code):
        if self.cmee == 1:
            return f"+CME ERROR: {code}"
        if self.cmee == 2:
            return "+CME ERROR: " + CME_TEXT.get(code, "unknown")
        return "ERROR"

    def _after_ok(self):
        # URCs a real modem sends after the answer: registration back, +NETOPEN: 0
        due, self._due = self._due, []
        for line in due:
            self.send(line)

    def _sim_ready(self):
        if self.sim == "absent":
            raise CmeError(10)
        return self.sim == "ready"

    def at(self, args):
        return [], "OK"

    def echo_set(self, args):
        self.echo = args != "0"
        return [], "OK"

    def ati(self, args):
        return list(self.spec["ati"]), "OK"

    def cmee_set(self, args):
        self.cmee = int(args or 0)
        return [], "OK"

    def cpin_read(self, args):
        self._sim_ready()
        return ["+CPIN: " + {"ready": "READY", "pin": "SIM PIN", "puk": "SIM PUK"}[self.sim]], "OK"

    def cpin_set(self, args):
        self._sim_ready()
        if self.sim != "pin":
            raise CmeError(3)
        self.pin_attempts += 1
        if args.strip('"') != self.pin:
            if self.pin_attempts >= PIN_TRIES:
                self.sim = "puk"
            raise CmeError(16)
        self.sim = "ready"
        return [], "OK"

    def reg_stat(self, domain):
        if self.sim != "ready":
            return 0
        if self.searching[domain] > 0:
            self.searching[domain] -= 1
            if self.searching[domain] == 0 and self.urc_n[domain]:
                self._due.append(f"{domain}: {REG_STAT[self.reg]}")
            return 2
        return REG_STAT[self.reg]

    def reg_read(self, domain, args):
        return [f"{domain}: {self.urc_n[domain]},{self.reg_stat(domain)}"], "OK"

    def reg_set(self, domain, args):
        self.urc_n[domain] = int(args or 0)
        return [], "OK"

    def registered(self):
        # registered in at least one domain, as the driver counts it
        return self.sim == "ready" and self.reg in ("home", "roaming") and min(self.searching.values()) == 0

    def csq_exec(self, args):
        return [f"+CSQ: {self.csq},{self.ber}"], "OK"

    def cops_read(self, args):
        if not self.registered():
            return ["+COPS: 0"], "OK"
        return [f'+COPS: 0,0,"{self.operator}",{self.act}'], "OK"

    def cgdcont_set(self, args):
        fields = split_args(args)
        if len(fields) < 3 or fields[0] != "1":
            raise CmeError(3)
        self.apn = fields[2]
        return [], "OK"

    def cgauth_set(self, args):
        self.auth = split_args(args)
        return [], "OK"

    def qicsgp_set(self, args):
        fields = split_args(args)
        self.apn, self.auth = fields[2], fields[3:]
        return [], "OK"

    def _connect(self, kind):
        if not self.registered() or self.apn is None:
            return [], "NO CARRIER"
        self.call, self.mode = kind, "data"
        return [], "CONNECT 150000000"

    def dial(self, args):
        if args not in ("*99#", "*99***1#"):
            return [], "NO CARRIER"
        return self._connect("ppp")

    def cgdata_set(self, args):
        if split_args(args)[:1] != ["PPP"]:
            raise CmeError(3)
        return self._connect("ppp")

    def online(self, args):  # ATO: back to the data session after "+++"
        if self.call is None:
            return [], "NO CARRIER"
        self.mode = "data"
        return [], "CONNECT 150000000"

    def hang_up(self, args):
        if self.call == "tcp":
            self._close_socket()
        self.call = None
        return [], "OK"

    def cfun_set(self, args):
        if args.replace(" ", "") == "1,1":  # full reset: the modem boots again
            self.send("OK")
            self.reboot()
            return [], None
        return [], "OK"

    def power_off(self, args):
        name, after = self.spec["power_off"]
        self.send("OK")
        for line in after:
            self.send(line)
        self.mute = True
        return [], None

    def reboot(self):
        self.echo, self.cmee = True, self.spec["cmee"]
        self.urc_n = dict.fromkeys(DOMAINS, 0)
        self.mode, self.call = "command", None
        self._close_socket()
        self.searching = dict.fromkeys(DOMAINS, 1)
        if self._sim_at_boot == "pin" and self.sim == "ready":
            self.sim = "pin"  # the SIM locks again at power-up
        self._boot()

    def qgps_set(self, args):
        if args == "1" and self.gnss:
            raise CmeError(504)  # Quectel: session is ongoing
        self.gnss = args == "1"
        return [], "OK"

    # TCP on the modem's own stack, transparent mode
    def cipmode_set(self, args):
        self.tcp_mode = int(args)
        return [], "OK"

    def netopen(self, args):
        self.net_open = self.registered()
        self._due.append("+NETOPEN: 0" if self.net_open else "+NETOPEN: 1")
        return [], "OK"

    def netclose(self, args):
        self.net_open = False
        return [], "OK"

    def qiact_set(self, args):
        if not self.registered():
            return [], "ERROR"
        self.net_open = True
        return [], "OK"

    def qideact_set(self, args):
        self.net_open = False
        return [], "OK"

    def tcp_open(self, args):
        fields = split_args(args)  # SIM7600: 0,"TCP",host,port; EC25: 1,0,"TCP",host,port,0,2
        at = 1 if self.model == "SIM7600" else 2
        host, port = fields[at + 1], int(fields[at + 2])
        transparent = self.tcp_mode == 1 if self.model == "SIM7600" else fields[at + 4 :] == ["2"]
        if not self.net_open or not transparent:
            return [], "ERROR"  # only what the driver uses is simulated
        try:
            self.sock = socket.create_connection((host, port), timeout=2)
        except OSError:
            return [], "CONNECT FAIL" if self.model == "SIM7600" else "ERROR"
        self.call, self.mode = "tcp", "data"
        self.tcp_opened += 1
        return [], "CONNECT 115200" if self.model == "SIM7600" else "CONNECT"

    def tcp_close(self, args):
        self._close_socket()
        self.call = None
        return [], "OK"

    # the network goes away
    def drop(self, searching_polls=3):
        """Lose the network: NO CARRIER if a call is up, registration URCs (for the
        domains whose URCs are on), then `searching_polls` registration reads of each
        domain answer "searching" before it is back."""
        with self._lock:
            self.drops += 1
            if self.call is not None:
                self._close_socket()
                self.call, self.mode = None, "command"
                self._plus, self._escape_at = 0, None
                self.send("NO CARRIER")
            self.searching = dict.fromkeys(DOMAINS, searching_polls)
            for domain in DOMAINS:
                if self.urc_n[domain]:
                    self.send(f"{domain}: 0")


def parse_command(body):
    """(name, kind, args) of what follows "AT": "+CSQ" -> ("+CSQ", "", ""), "+CPIN?" ->
    ("+CPIN", "?", ""), '+CPIN="1234"' -> ("+CPIN", "=", '"1234"'), "E0" -> ("E", "", "0")."""
    body = body.strip()
    if body[:1] in ("+", "$", "&"):
        m = re.match(r"([+$&][A-Za-z0-9]+)(=\?|\?|=)?(.*)$", body)
        if m is None:
            return body, "", ""
        return m.group(1).upper(), m.group(2) or "", m.group(3)
    if not body:
        return "", "", ""
    return body[0].upper(), "", body[1:]


def split_args(args):
    """Comma-separated arguments, quotes removed: '1,"IP","internet"' -> ["1", "IP", "internet"]."""
    return [a.strip() for a in next(csv.reader([args]))] if args else []
