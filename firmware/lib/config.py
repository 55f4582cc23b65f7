# The unit's configuration: defaults here, then the per-unit file that provisioning
# writes (config.json in the flash root). An invalid file is reported and the unit
# keeps running on the last good layer; it never boots into a dead state.
import json

import fixfilter
import reporter

# key: (default, meaning)
DEFAULTS = {
    "unit_id": ("unprovisioned", "unit id, also the MQTT client id and user name"),
    "broker_host": ("127.0.0.1", "MQTT broker host"),
    "broker_port": (1883, "MQTT broker port"),
    "mqtt_user": ("", "MQTT user name (empty: the unit id when a password is set)"),
    "mqtt_password": ("", "MQTT password"),
    "keepalive_s": (30, "MQTT keepalive, seconds"),
    "status_keys": ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "status keys fitted on the panel"),
    "long_press_keys": ([0], "keys that act only on a long press (the emergency key)"),
    "debounce_ms": (50, "a key must be stable this long to count"),
    "long_press_ms": (2000, "hold time of a long-press key"),
    "undelivered_alarm_s": (60, "error pattern and buzzer when a press is still undelivered"),
    "backoff_min_ms": (500, "first reconnect delay"),
    "backoff_max_ms": (30000, "longest reconnect delay"),
}

for _tunables in (reporter.TUNABLES, fixfilter.TUNABLES):
    for _key in _tunables:
        DEFAULTS[_key] = _tunables[_key][1:]

FILE = "config.json"


def defaults():
    return {k: v[0] for k, v in DEFAULTS.items()}


def _check(values):
    for k, v in values.items():
        if k not in DEFAULTS:
            raise ValueError("unknown key " + k)
        want = type(DEFAULTS[k][0])
        if type(v) is not want and not (want is float and type(v) is int):
            raise ValueError("%s must be %s" % (k, want.__name__))


def load(path=FILE, log=print):
    """Defaults overlaid with the file; a bad file is logged and ignored."""
    cfg = defaults()
    try:
        with open(path) as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        _check(values)
        cfg.update(values)
    except OSError:
        log("config: no %s, running on defaults" % path)
    except ValueError as e:
        log("config: %s is invalid (%s), running on defaults" % (path, e))
    return cfg
