# Board support: the only place, with main.py, that touches machine and network.
import sys


def load(cfg):
    """The board this firmware runs on."""
    if sys.platform == "linux":
        from boards.virtual import VirtualBoard

        return VirtualBoard()
    raise OSError("no board definition for platform " + sys.platform)
