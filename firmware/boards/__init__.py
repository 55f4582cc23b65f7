# Board support: the only place, with main.py, that touches machine and network.
# On the unix port the board is the virtual one. On an ESP32 the config key "board"
# picks one of BOARDS, by "name/revision" (as the birth message reports it) or by class
# name; empty means DEFAULT, reference build (a).
import sys

# "name/revision" -> (module in boards/, class); hardware/README.md describes each build
BOARDS = {
    "esp32s3-sim7600-m8n/1": ("esp32s3_sim7600_m8n", "ESP32S3SIM7600M8N_R1"),
    "esp32-ec25/1": ("esp32_ec25", "ESP32EC25_R1"),
}
DEFAULT = "esp32s3-sim7600-m8n/1"


def board_class(name):
    """The class of the board called `name`: "name/revision" or the class name."""
    spec = BOARDS.get(name or DEFAULT)
    for module, cls in BOARDS.values():
        if cls == name:
            spec = (module, cls)
    if spec is None:
        raise ValueError("unknown board %s (known: %s)" % (name, ", ".join(sorted(BOARDS))))
    module, cls = spec
    package = __import__("boards." + module)
    return getattr(getattr(package, module), cls)


def load(cfg):
    """The board this firmware runs on."""
    if sys.platform == "linux":
        from boards.virtual import VirtualBoard

        return VirtualBoard()
    if sys.platform == "esp32":
        return board_class(cfg.get("board"))()
    raise OSError("no board definition for platform " + sys.platform)
