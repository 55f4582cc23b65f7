# What the firmware needs from a board. A board family subclasses Board; each hardware
# revision subclasses its family with its pin map as data. A board provides:
#   gnss_stream()      an asyncio stream the GNSS receiver's NMEA bytes come in on (None:
#                      no receiver)
#   key(number)        True while status key `number` is held down (raw, undebounced)
#   led(number, mode)  set the LED of status key `number`: off, on, blink or error
#   buzzer(on)
#   rtc_time()         Unix seconds from the board's real-time clock (before GNSS time)
#   reset_cause()      why the board last started: power_on, watchdog, soft, crash, unknown
#   supply_volts()     the vehicle's supply (battery) voltage in volts, one decimal; None
#                      when the board cannot measure it
#   io_errors          failed transfers with the board's own parts (the I2C key
#                      expander) since start; 0 on a board without such parts
#   cellular(cfg, log) the LTE link (lib/cellular.py) on the board's modem; None: no
#                      modem, the host's network is the data path
#   storage()          the folder the unit's journal lives in (on a board: its littlefs
#                      root, ".")
#   async run(unit)    board-specific background work (panel I/O, watchdog); never
#                      returns. The watchdog is fed only while `unit.healthy()`: a hung
#                      task reboots the unit. A MemoryError in it goes to
#                      unit.out_of_memory("board").
# The interface is written here, not as stub methods: a module loaded from a .mpy file
# costs the unit's heap for every function, and each board writes its own anyway.


class Board:
    name = "base"
    revision = ""
    io_errors = 0
