"""Units' broker credentials on the NATS cluster (provisioning/nats.py), with the same
calls as BrokerAdmin (provisioning/broker_admin.py) for what provisioning uses.

NATS 2.9 has no dynamic-security API: its users live in its configuration, and a
configuration reload applies a change to every connection at once. So the truth is
`users.json` (0600) in the cluster's data folder: each unit's bcrypt hash and whether it
is enabled. Every change rewrites `auth.conf` (the `authorization` block every node's
config includes: the units, the gateway, the admin) and reloads every running node
(SIGHUP), then waits until each node says it loaded the new configuration
(`config_load_time` on its monitoring port). A reload closes, there and then, each
connection whose password no longer matches (measured on 2.9.10: within milliseconds),
so rotate and decommission (a hash of a password nobody knows) cut a unit off at once;
just before, the admin takes the unit's MQTT session over, so that it can come back at
once (`_cut_off`). A node that is down reads the same file when it starts. Units never
leave auth.conf (see auth_config), and the MQTT options are stated in the nodes'
configs (provisioning/nats.py): two 2.9.10 bugs a reload would otherwise hit.

Each unit is a NATS user named after its unit id, for MQTT connections only, allowed to

    publish    siaga.<id>.pos, .status, .conn, .tele   (MQTT siaga/<id>/pos, ...)
    subscribe  siaga.<id>.down, and $MQTT.sub.>        (the last: NATS's own delivery
               subject for a QoS 1 subscription, a random name per subscription; an MQTT
               client cannot subscribe to it by topic)

Passwords are hashed with bcrypt by the system's libcrypt (libxcrypt: `$2b$`, which
nats-server accepts), at cost 4, the least: the passwords are 192 random bits, so the
cost guards nothing, while nats-server checks the hash at every connect and, at every
reload, for every connected client (a reload with 200 units connected: 0.28 s at cost 4,
0.87 s at 6; cost 11, the usual default, is 0.13 s of CPU a check). Errors are
BrokerAdmin's (BrokerAdminError and its subclasses).
"""

import ctypes
import fcntl
import json
import os
import secrets
import signal
import ssl
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt

from .broker_admin import (
    ADMIN,
    GATEWAY,
    UPLINK,
    BrokerAdminError,
    BrokerUnreachable,
    UnitExists,
    UnknownUnit,
    check_unit_id,
    new_password,
    read_secret,
    write_secret,
)

BCRYPT_COST = 4
DELIVERY = "$MQTT.sub.>"  # nats-server 2.9: the subject of a QoS 1 subscription's consumer


def _libcrypt():
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib


def bcrypt(password, cost=BCRYPT_COST):
    """A bcrypt hash ($2b$) of `password`, by libcrypt (libxcrypt, in every Debian)."""
    lib = _libcrypt()
    setting = lib.crypt_gensalt(b"$2b$", cost, None, 0)  # salt from the kernel's random
    hashed = lib.crypt(password.encode(), setting) if setting else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise BrokerAdminError("this system's libcrypt cannot make bcrypt hashes")
    return hashed.decode()


def subject(topic):
    """The NATS subject of an MQTT topic or filter: siaga/+/pos -> siaga.*.pos."""
    return ".".join({"+": "*", "#": ">"}.get(level, level) for level in topic.split("/"))


def unit_permissions(unit_id):
    return {
        "publish": {"allow": [subject(f"siaga/{unit_id}/{kind}") for kind in UPLINK]},
        "subscribe": {"allow": [subject(f"siaga/{unit_id}/down"), DELIVERY]},
    }


def gateway_permissions():
    return {
        "publish": {"allow": [subject("siaga/+/down")]},
        "subscribe": {"allow": [*(subject(f"siaga/+/{kind}") for kind in UPLINK), DELIVERY]},
    }


def _lock():
    """The hash of a password that is thrown away: a user nobody can log in as."""
    return bcrypt(new_password())


def monitoring(port, path, timeout=2.0):
    """The JSON of a node's monitoring endpoint (on 127.0.0.1 only: it has no login)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.load(r)


def mqtt_login(host, port, user, password, cafile, client_id=None, clean=True, timeout=5.0):
    """Log in over MQTT (TLS, the project CA) and out again: True if the broker accepted."""
    client_id = client_id or f"siaga-probe-{secrets.token_hex(4)}"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    c.username_pw_set(user, password)
    c.tls_set(ca_certs=str(cafile), cert_reqs=ssl.CERT_REQUIRED)
    answered, result = threading.Event(), []
    c.on_connect = lambda cl, ud, flags, reason, props: (result.append(reason), answered.set())
    try:
        c.connect(host, port, keepalive=10)
    except OSError:
        return False
    c.loop_start()
    try:
        return answered.wait(timeout) and not result[0].is_failure
    finally:
        c.disconnect()
        c.loop_stop()


def admin_permissions():
    """The admin logs in over MQTT only to take a unit's session over (see _cut_off)."""
    return {"publish": {"deny": [">"]}, "subscribe": {"deny": [">"]}}


def _user(name, hashed, permissions):
    return {
        "user": name,
        "password": hashed,
        "allowed_connection_types": ["MQTT"],
        "permissions": permissions,
    }


def auth_config(state):
    """The `authorization` block (NATS's config syntax reads JSON) for this users.json."""
    users = [_user(GATEWAY, state["gateway"], gateway_permissions())] if state.get("gateway") else []
    if state.get("admin"):
        users.append(_user(ADMIN, state["admin"], admin_permissions()))
    # Every unit ever provisioned stays a user with its rights: a decommissioned or removed
    # one with a hash of a password nobody knows. 2.9.10 panics on a reload that takes a
    # user away who published a retained message (the unit's `bye`), on every node but the
    # one it published on: docs/brokers.md.
    locked = dict(state.get("removed", {}))
    for unit_id, u in state["units"].items():
        locked[unit_id] = u["hash"] if u["enabled"] else u["lock"]
    for unit_id, hashed in sorted(locked.items()):
        users.append(_user(unit_id, hashed, unit_permissions(unit_id)))
    return (
        "# Written by provisioning/nats_admin.py from users.json: edits here are lost.\n"
        f"authorization: {json.dumps({'users': users}, indent=1)}\n"
    )


class NatsAdmin:
    """The admin of the NATS cluster whose data folder this is. `connect()` and the
    context manager only check that a node runs (as BrokerAdmin's do, for its callers)."""

    def __init__(self, data_dir, timeout=10.0):
        self.data_dir = Path(data_dir).resolve()
        self.timeout = timeout
        try:
            self.info = json.loads((self.data_dir / "broker.json").read_text())
            self.layout = json.loads((self.data_dir / "cluster.json").read_text())
        except (FileNotFoundError, ValueError):
            raise BrokerAdminError(f"{self.data_dir} is not a NATS cluster's data folder") from None
        self.host, self.port = self.info["host"], self.info["tls_port"]

    @classmethod
    def from_data_dir(cls, data_dir, **kw):
        return cls(data_dir, **kw)

    @property
    def users_path(self):
        return self.data_dir / "users.json"

    @property
    def auth_path(self):
        return self.data_dir / "auth.conf"

    # the connection: there is none to keep; a node must run for a change to apply now
    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def connect(self):
        if not self._running():
            raise BrokerUnreachable(f"no node of the NATS cluster in {self.data_dir} is running")
        return self

    def close(self):
        pass

    # the users
    def units(self):
        """{unit_id: enabled} of every unit with credentials."""
        return {uid: u["enabled"] for uid, u in self._load()["units"].items()}

    def exists(self, unit_id):
        return check_unit_id(unit_id) in self._load()["units"]

    def is_enabled(self, unit_id):
        return self._known(self._load(), unit_id)["enabled"]

    def add_unit(self, unit_id, replace=False):
        """Credentials for a unit; returns its new password. UnitExists if it has some,
        unless `replace` (then: a new password, enabled)."""
        check_unit_id(unit_id)
        password = new_password()
        with self._change(cut=unit_id if replace else None) as state:
            if unit_id in state["units"] and not replace:
                raise UnitExists(f"unit {unit_id} already has credentials on the broker (replace them?)")
            state["units"][unit_id] = {"hash": bcrypt(password), "enabled": True, "lock": _lock()}
            state.setdefault("removed", {}).pop(unit_id, None)
        return password

    def rotate(self, unit_id):
        """A new password; the old one is refused from now on and a connected unit is cut off."""
        password = new_password()
        self.set_password(unit_id, password)
        return password

    def set_password(self, unit_id, password):
        with self._change(cut=unit_id) as state:
            self._known(state, unit_id)["hash"] = bcrypt(password)

    def decommission(self, unit_id):
        """The unit's user gets a hash of a password nobody knows (its own hash is kept for
        enable): refused from now on, and cut off if connected."""
        with self._change(cut=unit_id) as state:
            self._known(state, unit_id)["enabled"] = False

    def enable(self, unit_id):
        with self._change() as state:
            self._known(state, unit_id)["enabled"] = True

    def remove(self, unit_id):
        """Forget the unit's credentials (undoes add_unit); no error if there are none. Its
        user stays, locked, with its rights (see auth_config)."""
        check_unit_id(unit_id)
        with self._change(cut=unit_id) as state:
            gone = state["units"].pop(unit_id, None)
            if gone:
                state.setdefault("removed", {})[unit_id] = gone["lock"]

    def set_gateway(self, password):
        with self._change() as state:
            state["gateway"] = bcrypt(password)

    def _known(self, state, unit_id):
        try:
            return state["units"][check_unit_id(unit_id)]
        except KeyError:
            raise UnknownUnit(
                f"unit {unit_id} has no credentials on the broker {self.host}:{self.port}"
            ) from None

    # users.json, auth.conf and the reload
    def _load(self):
        try:
            return json.loads(self.users_path.read_text())
        except FileNotFoundError:
            return {"gateway": None, "units": {}}

    @contextmanager
    def _change(self, cut=None):
        """Under a lock (one admin at a time): the state to change; then the unit `cut`
        cut off, the state written, the nodes' auth.conf written and every running node
        reloaded."""
        with open(self.data_dir / "users.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._load()
            known = cut in state["units"]
            yield state
            if known:
                self._cut_off(cut)
            write_secret(self.users_path, json.dumps(state, indent=1))
            self.write_auth(state)
            self.reload()

    def write_auth(self, state=None):
        write_secret(self.auth_path, auth_config(state or self._load()).rstrip("\n"))

    def _cut_off(self, unit_id):
        """Take the unit's MQTT session over, as the admin, just before the reload: NATS
        closes the unit's connection on whichever node it is, the way it closes any
        client whose id is taken over, and keeps its session (clean_session false).
        Without this the reload closes the connection itself, and 2.9.10 then refuses
        that client id on that node for several seconds ("other session with client ID
        is in the process of connecting"): the unit, with its new password, could not
        come back at once. The reload is what guarantees the cut; this makes it clean."""
        password = self.data_dir / "admin.password"
        if not password.exists():
            return
        for node in self._running():  # the node the unit is on (connz: MQTT client ids)
            try:
                connz = monitoring(node["http"], f"/connz?mqtt_client={unit_id}")
            except (OSError, ValueError):
                continue
            if connz.get("num_connections"):
                cafile = self.info["cafile"]
                login = (ADMIN, read_secret(password), cafile, unit_id)
                mqtt_login(self.host, node["mqtt"], *login, clean=False)

    def _nodes(self):
        return self.layout["nodes"]

    def _pid(self, node):
        """The pid of the node's nats-server if it runs (its pid file, checked), or None."""
        try:
            pid = int((self.data_dir / node["name"] / "nats.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.data_dir / f"{node['name']}.conf").encode() in cmdline else None

    def _running(self):
        return [n for n in self._nodes() if self._pid(n)]

    def _loaded_at(self, node):
        return monitoring(node["http"], "/varz")["config_load_time"]

    def reload(self):
        """Every running node reads auth.conf again; returns once each has, or raises
        BrokerAdminError if one did not or exited meanwhile (a crash: its stderr.log)."""
        before = {}
        for node in self._running():
            try:
                before[node["name"]] = (node, self._loaded_at(node))
                pid = self._pid(node)
                if pid:
                    os.kill(pid, signal.SIGHUP)
            except OSError:
                before.pop(node["name"], None)  # starting or stopping: it reads the file at start
        deadline = time.monotonic() + self.timeout
        for name, (node, then) in before.items():
            while not self._reloaded(node, then):
                if not self._pid(node):
                    raise BrokerAdminError(f"NATS node {name} exited while reloading (see {name}/stderr.log)")
                if time.monotonic() > deadline:
                    raise BrokerAdminError(f"NATS node {name} did not reload its configuration (see its log)")
                time.sleep(0.02)

    def _reloaded(self, node, then):
        try:
            return self._loaded_at(node) != then
        except OSError:
            return False
