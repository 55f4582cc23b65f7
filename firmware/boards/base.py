# What the firmware needs from a board. A board family subclasses Board; each hardware
# revision subclasses its family with its pin map as data.


class Board:
    name = "base"
    revision = ""

    def gnss_stream(self):
        """An asyncio stream the GNSS receiver's NMEA bytes come in on."""
        raise NotImplementedError

    def key(self, number):
        """True while status key `number` is held down (raw, undebounced)."""
        raise NotImplementedError

    def led(self, number, mode):
        """Set the LED of status key `number`: off, on, blink or error."""
        raise NotImplementedError

    def buzzer(self, on):
        raise NotImplementedError

    def rtc_time(self):
        """Unix seconds from the board's real-time clock (before GNSS time is known)."""
        raise NotImplementedError

    def reset_cause(self):
        return "unknown"

    def supply_volts(self):
        """The vehicle's supply (battery) voltage in volts, one decimal; None when the
        board cannot measure it."""
        return None

    def cellular(self, cfg, log=print):
        """The LTE link (lib/cellular.py) on this board's modem; None: no modem, the
        host's network is the data path."""
        return None

    def storage(self):
        """The folder the unit's journal lives in (on a board: its littlefs root)."""
        return "."

    async def run(self, unit):
        """Board-specific background work (panel I/O, watchdog); never returns. The
        watchdog is fed only while `unit.healthy()`: a hung task reboots the unit."""
        raise NotImplementedError
