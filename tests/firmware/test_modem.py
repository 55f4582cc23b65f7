# The modem driver's parsing and line routing, without a pty: a fake link answers the
# driver's commands from a script. tests/test_modem.py runs the driver against the
# simulator.
import asyncio

import modem


class FakeLink:
    """Reader and writer in one: each command written gets its scripted answer lines."""

    def __init__(self, answers):
        self.answers = answers
        self.lines = []
        self.written = []
        self.ready = asyncio.Event()

    def write(self, data):
        cmd = data.decode().strip()
        self.written.append(cmd)
        for line in self.answers.get(cmd, ()):
            self.lines.append(line.encode() + b"\r\n")
        self.ready.set()

    async def readline(self):
        while not self.lines:
            self.ready.clear()
            await self.ready.wait()
        return self.lines.pop(0)


def _run(coro):
    return asyncio.run(coro)


def test_csq_to_dbm():
    assert modem.rssi_dbm(0) == -113
    assert modem.rssi_dbm(15) == -83
    assert modem.rssi_dbm(31) == -51
    assert modem.rssi_dbm(99) is None
    assert modem.rssi_dbm(100) == -116
    assert modem.rssi_dbm(191) == -25
    assert modem.parse_csq("+CSQ: 20,99") == (20, 99)


def test_registration_read_responses_and_urcs():
    assert modem.parse_reg("+CREG: 0,1") == ("+CREG", 1)  # read: <n>,<stat>
    assert modem.parse_reg('+CEREG: 2,5,"00C3","0A1B2C3D",7') == ("+CEREG", 5)
    assert modem.parse_reg("+CGREG: 3") == ("+CGREG", 3)  # URC: <stat>
    assert modem.parse_reg('+CEREG: 1,"00C3","0A1B2C3D",7') == ("+CEREG", 1)
    assert modem.parse_reg("+CSQ: 20,99") is None


def test_operator_model_and_errors():
    assert modem.parse_cops('+COPS: 0,0,"Telkomsel",7') == ("Telkomsel", "lte")
    assert modem.parse_cops("+COPS: 0") == (None, None)
    assert modem.parse_ati(["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"]) == ("EC25", "EC25EFAR06A06M4G")
    simcom = ["Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600E-H"]
    assert modem.parse_ati(simcom)[0] == "SIM7600E-H"
    assert modem.cme_reason(" 10") == ("no_sim", 10)
    assert modem.cme_reason("incorrect password") == ("pin_wrong", 16)
    assert modem.cme_reason("999") == ("cme_error", 999)


def test_urcs_between_answer_lines_go_to_their_handlers():
    answers = {"AT+CSQ": ["+CREG: 2", "+CSQ: 17,3", '+QIND: "csq",17,3', "OK"]}
    link = FakeLink(answers)
    m = modem.SIM7600(link, link)
    urcs = []
    m.on_urc = urcs.append
    got = _run(m.signal())
    assert got["rssi_dbm"] == -79 and got["ber"] == 3
    assert urcs == ['+QIND: "csq",17,3']
    assert m.reg == "searching"


def test_an_error_answer_has_its_reason():
    link = FakeLink({"AT+CPIN?": ["+CME ERROR: 10"], "AT+FOO": ["ERROR"]})
    m = modem.EC25(link, link)
    for cmd, reason in (("AT+CPIN?", "no_sim"), ("AT+FOO", "error")):
        try:
            _run(m.command(cmd))
            raise AssertionError("no error")
        except modem.ModemError as e:
            assert e.reason == reason and isinstance(e, OSError)


def test_a_silent_modem_times_out():
    link = FakeLink({})
    m = modem.SIM7600(link, link)
    try:
        _run(m.command("AT", 30))
        raise AssertionError("no time-out")
    except modem.ModemError as e:
        assert e.reason == "timeout"


def test_no_carrier_in_a_session_and_deregistration_are_losses():
    m = modem.SIM7600(FakeLink({}), None)
    m.state = "data"
    m.route("NO CARRIER")
    assert m.state == "command" and m._lost_reason == "no_carrier"
    m = modem.SIM7600(FakeLink({}), None)
    m.route("+CEREG: 1")
    assert m.registered and m._lost_reason is None
    m.route("+CEREG: 0")
    assert not m.registered and m._lost_reason == "deregistered"


def test_long_lines_are_dropped_and_counted():
    m = modem.EC25(FakeLink({}), None)
    m._take(b"x" * 300 + b"\r\n")
    m._take(b"+CREG: ")  # a part of a line waits for its end
    m._take(b"5\r\n")
    assert m.discards == 1 and m.reg == "roaming"


def test_bad_arguments_are_value_errors():
    m = modem.SIM7600(FakeLink({}), None)
    for coro in (m.start(pin="12a4"), m.set_apn('inter"net'), m.open_tcp("host", 0)):
        try:
            _run(coro)
            raise AssertionError("accepted")
        except ValueError:
            pass
