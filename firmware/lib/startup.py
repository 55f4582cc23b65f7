# Building the unit (unit.py): its objects, once, at boot.
# main.py gives this module back to the heap afterwards (BOOT_ONLY): code that runs once
# should not hold the heap for the unit's whole life (docs/firmware-memory.md).
import time

from micropython import const

import wire
from clock import Clock
from feedback import Feedback
from fixfilter import FixFilter
from flashstate import next_boot, reset_cause
from heap import Heap
from keys import Keypad
from mqtt import MQTTClient
from nmea import NMEADecoder
from outbox import Outbox
from reporter import ReportPolicy
from unit import CRITICAL_TASKS, PRESS_SLOTS, Unit

# What the unit reads of its configuration after start (unit.py); the rest is read once,
# here. Only these stay in the dict the unit keeps: the whole (some 55 keys, lists and
# strings with them) goes back to the heap. A settings push reads it all again
# (config.put_in_force) and refreshes these.
_RUN_KEYS = const(
    (
        "_version",
        "backoff_min_ms",
        "backoff_max_ms",
        "confirm_after_s",
        "report_batch",
        "telemetry_s",
        "heap_log_s",
    )
)
_CELL_KEYS = const(
    ("sim_pin", "apn", "apn_user", "apn_password", "register_s", "modem_poll_s")
)  # cellular.py's


def build(board, cfg, log=print):
    """The unit on `board` with the configuration `cfg` (config.load())."""
    u = Unit()
    u.board = board
    u.cfg = cfg
    u.log = log
    u.unit_id = cfg["unit_id"]
    u.heap = Heap(cfg["mem_reserve_bytes"], cfg["mem_reset_s"])  # first: its reserve too
    u.boot = next_boot()
    u.reset = reset_cause(board.reset_cause())  # for the birth
    u.seq = 0
    u.topics = {}  # kind -> the unit's topic, as bytes: built once, not per message
    for kind in ("pos", "status", "conn", "tele", "down"):
        u.topics[kind] = wire.topic(u.unit_id, kind).encode()
    u.clock = Clock(board.rtc_time)
    u.gnss = NMEADecoder()
    u.gnss.on_fix = u.on_fix
    u.fixes = FixFilter(cfg)  # the last trusted fix
    u.policy = ReportPolicy(cfg)
    u.last_report_ms = time.ticks_ms()
    u.tls = _tls(cfg, log)
    u.storage = board.storage()
    u.outbox = Outbox(
        u.storage + "/ob", cfg["outbox_max_bytes"], cfg["outbox_status_cap"], log, cfg["outbox_status_ram"]
    ).open()
    u.cell = board.cellular(cfg, log)  # the LTE link; None: the host's network
    u.started_ms = time.ticks_ms()
    u.wake = False  # something to send
    u.retry_now = False  # a press: no waiting out the link's backoff
    u.link_up = False
    u.stopping = False
    u.feedback = Feedback(board, cfg["undelivered_alarm_s"])
    keys = cfg["status_keys"], cfg["long_press_keys"]
    u.keypad = Keypad(board.key, keys[0], keys[1], u.pressed, cfg["debounce_ms"], cfg["long_press_ms"])
    u.client = _client(u, cfg)  # one for every session
    u.tele_at = None  # ticks of the last telemetry in this session
    u.reports = 0
    u.assignment = None  # the incident id the dispatcher assigned, if any
    u.newest_press = None  # seq of the newest press: it goes out before older ones
    now = time.ticks_ms()
    u.beats = {task: now for task in CRITICAL_TASKS}  # the last sign of life of each
    u.hung = None
    u.stall_keys = False
    # presses noted by the keypad's callback, not yet in the outbox: key (| 0x80 for a
    # long press) and ticks in fixed slots, so noting one allocates nothing; the record,
    # once built, is kept for the next try if the outbox ran out of heap
    u._press_key = bytearray(PRESS_SLOTS)
    u._press_at = [0] * PRESS_SLOTS
    u._press_rec = [None] * PRESS_SLOTS
    u._press_first = u._press_count = 0
    u._press_retry = 0  # ticks after which a press that failed is tried again
    u.cfg = _kept(cfg, u.cell)
    return u


def _kept(cfg, cell):
    """The keys of the configuration read after start, in a dict of their own; shared
    with the LTE link, so that a settings push reaches both."""
    kept = {}
    for k in _RUN_KEYS + (_CELL_KEYS if cell is not None else ()):
        kept[k] = cfg[k]
    if cell is not None:
        cell.cfg = kept
    return kept


def _client(u, cfg):
    user = cfg["mqtt_user"] or (u.unit_id if cfg["mqtt_password"] else None)
    brokers = []  # (host, port) of each node, in config order (checked by config.py)
    for node in cfg["broker_host"].split(","):
        host, _, port = node.strip().partition(":")
        brokers.append((host, int(port) if port else cfg["broker_port"]))
    client = MQTTClient(
        u.unit_id,
        brokers[0][0],
        brokers[0][1],
        user,
        cfg["mqtt_password"] or None,
        cfg["keepalive_s"],
        clean=False,
        ssl=(u.tls or cfg["broker_ca"]) if cfg["broker_tls"] else None,  # no CA: no link
        server_hostname=cfg["broker_hostname"],
        transport=u.cell if u.cell is not None and u.cell.tcp else None,
    )
    if len(brokers) > 1:  # a cluster: each connect to the next node
        client.brokers = brokers
    client.max_inflight = cfg["mqtt_max_inflight"]
    client.probe = u.heap.sample  # the heap's high-water mark, at each message framed
    client.on_message = u.on_downlink
    return client


def _tls(cfg, log):
    """The TLS context, made first, while the heap is still in one piece; None without
    TLS (and then mqtt_tls.py is never loaded)."""
    if not (cfg["broker_tls"] and cfg["broker_ca"]):
        return None
    from mqtt_tls import context

    try:
        return context(cfg["broker_ca"])
    except (OSError, ValueError) as e:  # no link then, and the link says why
        log("tls: %s" % (e,))
        return None
