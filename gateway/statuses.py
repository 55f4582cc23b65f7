"""The crew status scheme: what each status key means and what it does to availability.

The default follows the FMS-style keys 112 crews use; an agency can load its own scheme
from a JSON file of the same shape (`siaga gateway --status-scheme FILE`).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

AVAILABILITIES = ("available", "assigned", "busy", "out_of_service", "emergency", "offline")
UNCHANGED = "unchanged"  # the key is a flag (request to talk), availability stays


@dataclass(frozen=True)
class Status:
    key: int
    code: str
    label_id: str
    label_en: str
    availability: str
    long_press: bool = False

    @property
    def settable(self):
        """Whether a dispatcher may set it: not a flag, not the crew's emergency."""
        return self.availability not in (UNCHANGED, "emergency")

    def as_json(self):
        return {"key": self.key, "code": self.code, "label": self.label_id, "label_en": self.label_en}


DEFAULT_SCHEME = (
    Status(1, "available_road", "Siaga di jalan", "Available, on the road", "available"),
    Status(2, "available_station", "Siaga di pos", "Available at station", "available"),
    Status(3, "en_route", "Menuju lokasi", "En route", "busy"),
    Status(4, "on_scene", "Tiba di lokasi", "On scene", "busy"),
    Status(5, "request_talk", "Minta bicara", "Request to talk", UNCHANGED),
    Status(6, "out_of_service", "Tidak siaga", "Out of service", "out_of_service"),
    Status(7, "transporting", "Membawa pasien", "Transporting patient", "busy"),
    Status(8, "at_destination", "Tiba di tujuan", "At hospital or destination", "busy"),
    Status(9, "returning", "Kembali ke pos", "Returning", "available"),
    Status(0, "emergency", "Darurat", "Emergency", "emergency", long_press=True),
)


class StatusScheme:
    def __init__(self, statuses=DEFAULT_SCHEME):
        self.by_key = {s.key: s for s in statuses}
        for s in statuses:
            if s.availability not in AVAILABILITIES + (UNCHANGED,):
                raise ConfigError(f"status key {s.key}: unknown availability {s.availability!r}")

    def get(self, key):
        return self.by_key.get(key)

    @classmethod
    def load(cls, path):
        """A scheme from a JSON list of statuses, each with the fields of Status."""
        try:
            rows = json.loads(open(path, encoding="utf-8").read())
            return cls(tuple(Status(**row) for row in rows))
        except (OSError, ValueError, TypeError) as e:
            raise ConfigError(f"status scheme {path}: {e}") from None


def load_schemes(default_file="", folder=""):
    """Named schemes a unit can use: "default" (the built-in one, or `default_file`) and
    one per NAME.json in `folder`."""
    schemes = {"default": StatusScheme.load(default_file) if default_file else StatusScheme()}
    if folder:
        paths = sorted(Path(folder).glob("*.json"))
        if not Path(folder).is_dir():
            raise ConfigError(f"status schemes folder {folder} does not exist")
        for path in paths:
            schemes[path.stem] = StatusScheme.load(path)
    return schemes
