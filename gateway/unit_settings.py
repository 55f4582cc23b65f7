"""The settings a gateway may push to a unit (`PUT /api/v1/units/{id}/settings`), each
with its type and the range a unit can live with. The unit's own defaults and type
checks are in firmware/lib/config.py; tests/test_unit_settings.py keeps the two lists
the same (the keys and types a unit accepts from a push, no more, no fewer).

A push is checked here whole before anything is stored or sent: an unknown key, a wrong
type or a value out of range is refused with 400 and the key's name, so that what
reaches a unit is always something it takes.
"""

from .errors import BadRequest

# name -> (type, low, high); for "keys", a list of status keys 0..9 (low..high: its length)
SETTINGS = {
    "keepalive_s": (int, 10, 3600),
    "status_keys": ("keys", 1, 10),
    "long_press_keys": ("keys", 0, 10),
    "debounce_ms": (int, 5, 1000),
    "long_press_ms": (int, 200, 10_000),
    "undelivered_alarm_s": (int, 5, 3600),
    "backoff_min_ms": (int, 100, 60_000),
    "backoff_max_ms": (int, 1000, 3_600_000),
    "outbox_max_bytes": (int, 16_384, 16_777_216),
    "outbox_status_cap": (int, 10, 10_000),
    "outbox_status_ram": (int, 1, 64),
    "report_batch": (int, 1, 64),
    "mqtt_max_inflight": (int, 1, 64),
    "mem_reserve_bytes": (int, 0, 16_384),
    "mem_reset_s": (int, 1, 3600),
    "heap_log_s": (int, 0, 3600),
    "confirm_after_s": (int, 5, 3600),
    "telemetry_s": (int, 30, 86400),
    "register_s": (int, 10, 3600),
    "modem_poll_s": (int, 5, 3600),
    "report_max_period_s": (int, 1, 3600),
    "report_min_period_s": (int, 0, 600),
    "report_distance_m": (int, 10, 100_000),
    "report_angle_deg": (int, 1, 180),
    "report_angle_min_speed": (float, 0.0, 100.0),
    "report_speed_delta": (float, 0.5, 100.0),
    "report_heartbeat_s": (int, 10, 86400),
    "report_start_speed": (float, 0.0, 100.0),
    "report_start_s": (int, 0, 600),
    "report_stop_speed": (float, 0.0, 100.0),
    "report_stop_s": (int, 0, 3600),
    "gnss_min_sats": (int, 0, 64),
    "gnss_max_hdop": (float, 0.5, 99.0),
    "gnss_max_speed": (float, 1.0, 1000.0),
}


def _check(name, value):
    kind, lo, hi = SETTINGS[name]
    if kind == "keys":
        ok = (
            type(value) is list
            and lo <= len(value) <= hi
            and all(type(k) is int and 0 <= k <= 9 for k in value)
            and len(set(value)) == len(value)
        )
        if not ok:
            raise BadRequest(f"{name} must be a list of {lo} to {hi} different status keys 0..9")
        return value
    number = type(value) is int or (kind is float and type(value) is float)
    if not number or not lo <= value <= hi:  # NaN fails the range too
        what = "an integer" if kind is int else "a number"
        raise BadRequest(f"{name} must be {what} from {lo} to {hi}; {str(value)[:40]!r} is not")
    return value


def check(values):
    """The values, or BadRequest naming the first wrong one."""
    for name, value in values.items():
        if name not in SETTINGS:
            raise BadRequest(
                f"{name[:64]!r} is not a setting a unit takes from the gateway;"
                f" known: {', '.join(sorted(SETTINGS))}",
                "unknown_setting",
            )
        _check(name, value)
    return values


def known(values):
    """Of a set pushed before these checks existed, what a unit can take."""
    out = {}
    for name, value in values.items():
        if name in SETTINGS:
            try:
                out[name] = _check(name, value)
            except BadRequest:
                pass
    return out
