# The unit's LTE link: the modem driver (modem.py) brought up and kept up, and its data
# session handed to PPP where the board has it. Hardware is passed in: the board gives
# the modem driver and, on the ESP32, `ppp()`, which starts network.PPP on the modem's
# UART and returns it (anything with isconnected()). Without `ppp` (the unix port, whose
# data path is the host's sockets) the modem is still started, registered and watched,
# so signal and registration reach the unit's telemetry as they would on a board.
#
# With data_path "modem_tcp" there is no PPP: the MQTT client's connection is a TCP
# connection on the modem's own stack in transparent mode (modem.open_tcp), opened by
# `open()` for each session and ended by `close()` ("+++", then the close commands).
import asyncio


class _Writer:
    """The modem's UART as the MQTT client's writer (a raw file on the unix port)."""

    def __init__(self, w):
        self.w = w

    def write(self, data):
        self.w.write(data)

    async def drain(self):
        if hasattr(self.w, "drain"):
            await self.w.drain()


class Cellular:
    first_backoff_ms = 2000
    max_backoff_ms = 120000

    def __init__(self, modem, cfg, ppp=None, log=print):
        self.modem = modem
        self.cfg = cfg
        self.tcp = cfg.get("data_path") == "modem_tcp"  # MQTT over the modem's TCP stack
        self.ppp = None if self.tcp else ppp
        self.log = log
        self.link = None  # the PPP interface while a data session is up
        self.error = None  # the reason the last bring-up failed
        self.connected = False  # a TCP connection is open (modem_tcp)
        self._closing = None  # its hang-up, while that runs

    def up(self):
        """True while the data path works (without PPP: while registered)."""
        if self.ppp is not None:
            return self.link is not None and self.link.isconnected()
        return self.modem.registered

    # the MQTT client's transport with data_path "modem_tcp"
    async def open(self, host, port):
        """A TCP connection to host:port on the modem's own stack: (reader, writer)."""
        while self._closing is not None:  # the last connection's hang-up first
            await asyncio.sleep_ms(50)
        reader, writer = await self.modem.open_tcp(host, port, redial=False)
        self.connected = True
        return reader, _Writer(writer)

    def close(self):
        """End the connection (the client dropped its link), in the background."""
        if self.connected:
            self.connected = False
            self._closing = asyncio.create_task(self._hangup())

    async def _hangup(self):
        try:
            await self.modem.hangup()
        except OSError as e:  # the modem does not answer: supervise() restarts it
            self.modem.lost("hangup_" + (getattr(e, "reason", None) or "error"))
        finally:
            self._closing = None

    def info(self):
        """What the unit's telemetry says of its link."""
        m = self.modem
        return {
            "rssi": m.rssi_dbm,
            "reg": m.reg,
            "op": m.operator,
            "act": m.act,
            "modem": m.state,
            "losses": m.losses,
            "modem_error": self.error,
            "modem_discards": m.discards,
        }

    async def _bring_up(self):
        cfg, m = self.cfg, self.modem
        await m.start(cfg["sim_pin"] or None)
        await m.register(cfg["register_s"] * 1000)
        await m.refresh()
        if self.ppp is not None or self.tcp:
            await m.set_apn(cfg["apn"], cfg["apn_user"] or None, cfg["apn_password"] or None)
        if self.ppp is not None:
            await m.connect_data(handoff=True)
            self.link = self.ppp()

    def _changed(self, event, detail):
        self.log("modem: %s %s" % (event, detail))
        if event == "up" and self.ppp is not None:
            self.link = self.ppp()  # a new data session: PPP again on it

    async def run(self):
        """Never returns: up, then watched and re-registered (the driver's supervise),
        with backoff when the bring-up itself fails (no SIM, denied, no answer)."""
        delay = self.first_backoff_ms
        while True:
            try:
                await self._bring_up()
                self.error = None
                self.log("modem: up, %s, %s dBm" % (self.modem.reg, self.modem.rssi_dbm))
                await self.modem.supervise(
                    poll_ms=self.cfg["modem_poll_s"] * 1000,
                    register_ms=self.cfg["register_s"] * 1000,
                    link_up=self.up if self.ppp is not None else None,
                    on_change=self._changed,
                )
            except OSError as e:
                self.error = getattr(e, "reason", None) or str(e)
                self.log("modem: %s; again in %d s" % (self.error, delay // 1000))
                await asyncio.sleep_ms(delay)
                delay = min(2 * delay, self.max_backoff_ms)
