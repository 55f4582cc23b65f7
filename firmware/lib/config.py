# The unit's configuration, in three layers, each over the one before:
#   1. defaults, below (and the TUNABLES of reporter.py and fixfilter.py);
#   2. config.json, written by provisioning: identity, broker, credentials, key map;
#   3. settings.json, the settings the gateway pushed over the downlink (`config`
#      messages), kept with their version and written atomically (temp file, rename).
# An invalid file or push is reported and refused: the unit keeps its last good values
# (an invalid config.json: the copy of the last one that loaded) and never boots into a
# dead state.
import json

import fixfilter
import reporter
from flashstate import write_atomic

FILE = "config.json"
GOOD = "config.good.json"  # a copy of the last config.json that loaded
PUSHED = "settings.json"

DEFAULTS = {
    "unit_id": "unprovisioned",  # unit id: MQTT client id and user name
    "board": "",  # board class name in boards/; empty: the port's own (virtual on unix)
    # the broker's host name or address; a cluster's nodes comma-separated, each `host` or
    # `host:port` ("n1.example:8883,n2.example"): one connect each in turn (mqtt_connect.py)
    "broker_host": "127.0.0.1",
    "broker_port": 1883,  # the port of a host given without one
    "mqtt_user": "",  # empty: the unit id, when a password is set
    "mqtt_password": "",
    "broker_tls": False,  # TLS to the broker, its certificate verified against broker_ca
    "broker_ca": "",  # the CA certificate file on the unit's flash (PEM or DER, one certificate)
    # the name the broker's certificate must carry; empty: the host dialled (each node's own)
    "broker_hostname": "",
    "keepalive_s": 30,  # MQTT keepalive; a silent link is dead after 1.5 of these
    "status_keys": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],  # status keys fitted on the panel
    "long_press_keys": [0],  # keys that act only on a long press (the emergency key)
    "debounce_ms": 50,  # a key must be stable this long to count
    "long_press_ms": 2000,  # hold time of a long-press key
    "undelivered_alarm_s": 60,  # error pattern and buzzer when a press is still undelivered
    "backoff_min_ms": 500,  # first reconnect delay
    "backoff_max_ms": 30000,  # longest reconnect delay
    "outbox_max_bytes": 262144,  # flash for waiting messages; past it positions are thinned
    "outbox_status_cap": 500,  # waiting presses kept before the oldest is dropped
    "outbox_status_ram": 8,  # waiting presses held whole in RAM; the others wait on flash only
    "report_batch": 16,  # backlog positions per message when catching up (2 while heap is short)
    "mqtt_max_inflight": 8,  # QoS 1 messages kept for resending; past it the oldest is dropped
    "mem_reserve_bytes": 1024,  # emergency heap reserve, given back when an allocation fails
    "mem_reset_s": 10,  # heap starved (allocations failing, no reserve) this long: reset
    "heap_log_s": 0,  # log the heap in use this often (s; soak tests); 0: never
    "confirm_after_s": 30,  # a press the gateway has not confirmed this long goes again
    "telemetry_s": 300,  # link, modem and memory telemetry this often while online
    "sim_pin": "",  # the SIM's PIN, if it asks for one (sent once: a wrong PIN is never retried)
    "apn": "internet",  # the operator's APN (Telkomsel, Indosat and XL all answer "internet")
    "apn_user": "",
    "apn_password": "",
    "register_s": 120,  # how long the modem may take to register before it is restarted
    "modem_poll_s": 30,  # signal and registration polled this often
    # "": the board's data path (PPP over the modem on the ESP32; the host's network in the
    # unix port). "modem_tcp": MQTT over a TCP connection on the modem's own stack
    # (transparent mode), for modems or firmware without PPP; plain MQTT only, so for a
    # private APN (the unit refuses it with broker_tls on).
    "data_path": "",
}
for _tunables in (reporter.TUNABLES, fixfilter.TUNABLES):  # (key, attribute, default, ...)
    for _i in range(0, len(_tunables), 3):
        DEFAULTS[_tunables[_i]] = _tunables[_i + 2]

# What the gateway may change: never identity, broker or credentials, so that no push
# can cut a unit off.
LOCAL_ONLY = (
    "unit_id",
    "board",
    "broker_host",
    "broker_port",
    "mqtt_user",
    "mqtt_password",
    "broker_tls",
    "broker_ca",
    "broker_hostname",
    "sim_pin",
    "apn",
    "apn_user",
    "apn_password",
    "data_path",
)


DATA_PATHS = ("", "modem_tcp")


def check(values, pushed=False):
    """ValueError naming the first bad key, if any."""
    if not isinstance(values, dict):
        raise ValueError("not a JSON object")
    for k in values:
        if k not in DEFAULTS:
            raise ValueError("unknown key " + k)
        if pushed and k in LOCAL_ONLY:
            raise ValueError(k + " is set by provisioning only")
        want = type(DEFAULTS[k])
        v = values[k]
        if type(v) is not want and not (want is float and type(v) is int):
            raise ValueError("%s must be %s" % (k, want.__name__))
    for node in values.get("broker_host", "-").split(","):
        host, colon, port = node.strip().partition(":")
        if not host or colon and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("broker_host must be host or host:port, comma-separated: " + node)
    if values.get("data_path", "") not in DATA_PATHS:
        raise ValueError("data_path must be one of " + ", ".join(repr(p) for p in DATA_PATHS))


def _read(path):
    with open(path) as f:
        return json.load(f)


def _layer(path, pushed):
    """The values of one layer's file and its version; OSError when there is none,
    ValueError when it is invalid."""
    data = _read(path)
    values = data.get("values") if pushed and isinstance(data, dict) else data
    check(values, pushed)
    return values, data.get("version", 0) if pushed else 0


def _provisioned(log):
    """config.json; when it is invalid, the last good copy of it (and say so)."""
    try:
        values = _layer(FILE, False)[0]
    except OSError:
        log("config: no %s, running on defaults" % FILE)
        return {}
    except ValueError as e:
        log("config: %s is invalid (%s)" % (FILE, e))
        try:
            values = _layer(GOOD, False)[0]
        except (OSError, ValueError):
            log("config: no good copy either, running on defaults")
            return {}
        log("config: running on the last good copy, %s" % GOOD)
        return values
    try:
        good = _layer(GOOD, False)[0]
    except (OSError, ValueError):
        good = None
    if good != values:
        write_atomic(GOOD, json.dumps(values))
    return values


def load(log=print):
    """Defaults, then config.json (or its last good copy), then the pushed settings;
    cfg['_version'] is the version of the pushed settings in force (0: none)."""
    cfg = dict(DEFAULTS)
    cfg.update(_provisioned(log))
    cfg["_version"] = 0
    try:
        values, cfg["_version"] = _layer(PUSHED, True)
        cfg.update(values)
    except OSError:
        pass
    except ValueError as e:
        log("config: %s is invalid (%s), not used" % (PUSHED, e))
    return cfg


def apply_pushed(cfg, values, version):
    """Check, persist and apply settings pushed by the gateway; ValueError if refused.
    `values` is the whole set the gateway has pushed (docs/protocol.md, config): one it
    no longer holds goes back to the unit's own value (config.json, or the default)."""
    check(values, True)
    try:
        kept = _layer(PUSHED, True)[0]
    except (OSError, ValueError):
        kept = {}
    write_atomic(PUSHED, json.dumps({"version": version, "values": values}))
    gone = [k for k in kept if k not in values]
    if gone:
        own = dict(DEFAULTS)
        own.update(_provisioned(lambda message: None))
        for k in gone:
            cfg[k] = own[k]
    cfg.update(values)
    cfg["_version"] = version


def put_in_force(unit, values, version):
    """Settings pushed by the gateway to `unit`: checked, kept on flash, in force at once;
    refused whole, and logged, when any is bad. (Here, not in unit.py: this module is
    loaded for a push only.) The unit keeps only the keys it reads after start
    (startup.py): the whole configuration is read again, the pushed settings put over
    it, the unit's parts set from it, and the unit's keys refreshed."""
    cfg = load(lambda message: None)  # said at boot already
    try:
        apply_pushed(cfg, values, version)
    except (ValueError, OSError) as e:
        unit.log("settings %d refused: %s" % (version, e))
        return
    unit.policy.configure(cfg)
    unit.fixes.configure(cfg)
    unit.keypad.debounce_ms, unit.keypad.long_press_ms = cfg["debounce_ms"], cfg["long_press_ms"]
    unit.feedback.alarm_ms = cfg["undelivered_alarm_s"] * 1000
    kept = unit.cfg
    for k in kept:
        kept[k] = cfg[k]
    unit.log("settings %d in force: %s" % (version, ", ".join(sorted(values))))
