"""Pseudo-terminals for the hardware that cannot exist here (a GNSS receiver, a crew
panel, a modem, a board's USB serial), each speaking its real protocol."""

import os
import pty
import termios
import tty


def raw_pty():
    """A raw pty whose reads return what is there (VMIN=0, VTIME=0), like a UART
    read with timeout 0 on the board: an asyncio reader never blocks the unit."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    attrs[6][termios.VMIN] = 0
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return master, slave, os.ttyname(slave)
