"""Units' broker credentials, managed through Mosquitto's dynamic security plugin.

Each unit is a dynsec client named after its unit id, pinned to that MQTT client id, with
a role of its own, `unit-<id>`:

    publish    siaga/<id>/pos, siaga/<id>/status, siaga/<id>/conn, siaga/<id>/tele
    subscribe  siaga/<id>/down  (and receive nothing else)

Commands go as JSON to `$CONTROL/dynamic-security/v1` over the broker's TLS listener,
logged in as the broker's admin client; every change applies at once, without a reload:
a disabled client or a changed password ends the unit's connection there and then.

    BrokerAdminError            (a SiagaError: the CLI prints it, exit code 2)
    ├── BrokerUnreachable       no connection to the broker, or no answer from dynsec
    ├── AdminRefused            the broker refused the admin's login
    ├── UnitExists              add_unit of a unit that has credentials (use replace=True)
    └── UnknownUnit             the unit has no credentials on this broker

`open_admin(data_dir)` gives the admin of whichever broker the folder is (this one, or
the NATS cluster's NatsAdmin, provisioning/nats_admin.py): both have the same calls.
"""

import json
import os
import secrets
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.errors import SiagaError
from gateway.protocol import UNIT_ID

TOPIC = "$CONTROL/dynamic-security/v1"
ADMIN = "admin"
GATEWAY = "siaga-gateway"
RESERVED = (ADMIN, GATEWAY)
UPLINK = ("pos", "status", "conn", "tele")


class BrokerAdminError(SiagaError):
    code = "broker"


class BrokerUnreachable(BrokerAdminError):
    pass


class AdminRefused(BrokerAdminError):
    pass


class UnitExists(BrokerAdminError):
    code = "unit_exists"


class UnknownUnit(BrokerAdminError):
    code = "unknown_unit"


def new_password():
    return secrets.token_urlsafe(24)


def write_secret(path, text):
    """A file only its owner can read (0600 from the start: never readable by others)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    tmp.replace(path)


def read_secret(path):
    return Path(path).read_text().strip()


def _acl(acltype, topic, allow=True):
    return {"acltype": acltype, "topic": topic, "allow": allow}


def unit_acls(unit_id):
    down = f"siaga/{unit_id}/down"
    return [
        *(_acl("publishClientSend", f"siaga/{unit_id}/{kind}") for kind in UPLINK),
        _acl("subscribeLiteral", down),
        _acl("publishClientReceive", down),
    ]


def gateway_acls():
    return [
        *(
            _acl(t, f"siaga/+/{kind}")
            for kind in UPLINK
            for t in ("subscribeLiteral", "publishClientReceive")
        ),
        _acl("publishClientSend", "siaga/+/down"),
    ]


def open_admin(data_dir, **kw):
    """The admin of the broker whose data folder this is: BrokerAdmin for Mosquitto,
    NatsAdmin for a NATS cluster (broker.json "kind"). Either is a context manager with
    connect/close, add_unit(id, replace=False), rotate, set_password, decommission,
    enable, is_enabled, exists, remove, units, and host and port."""
    try:
        kind = json.loads((Path(data_dir) / "broker.json").read_text()).get("kind")
    except (OSError, ValueError):
        kind = None  # from_data_dir says what is missing
    if kind == "nats":
        from .nats_admin import NatsAdmin

        return NatsAdmin.from_data_dir(data_dir, **kw)
    return BrokerAdmin.from_data_dir(data_dir, **kw)


def check_unit_id(unit_id):
    if not UNIT_ID.match(unit_id or ""):
        raise BrokerAdminError(f"{unit_id!r} is not a unit id (a-z, 0-9 and '-', at most 16)")
    if unit_id in RESERVED:
        raise BrokerAdminError(f"{unit_id!r} is reserved for the broker's own clients")
    return unit_id


class BrokerAdmin:
    def __init__(self, host, port, admin_user, admin_password, cafile=None, hostname=None, timeout=10.0):
        self.host, self.port = host, port
        self.user, self.password = admin_user, admin_password
        self.cafile, self.hostname = cafile, hostname
        self.timeout = timeout
        self.client = None
        self._answers = {}
        self._answered = threading.Condition()
        # Every admin client gets every answer on the response topic: ours carry our tag.
        self._tag = secrets.token_hex(6)
        self._ids = iter(range(1, 1 << 62))

    @classmethod
    def from_data_dir(cls, data_dir, **kw):
        """The admin of the secure broker whose data folder this is (provisioning/mosquitto.py
        writes broker.json and admin.password there)."""
        d = Path(data_dir)
        try:
            info = json.loads((d / "broker.json").read_text())
            password = read_secret(d / "admin.password")
        except FileNotFoundError as e:
            raise BrokerAdminError(
                f"{d} is not a secure broker's data folder ({e.filename} is missing)"
            ) from None
        return cls(info["host"], info["tls_port"], ADMIN, password, cafile=info["cafile"], **kw)

    # the connection
    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def connect(self):
        if self.client is not None:
            return self
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"siaga-admin-{secrets.token_hex(4)}")
        c.username_pw_set(self.user, self.password)
        if self.cafile:
            c.tls_set(ca_certs=str(self.cafile), cert_reqs=ssl.CERT_REQUIRED)
        connack = threading.Event()
        c.on_connect = lambda cl, ud, flags, reason, props: (setattr(self, "_connack", reason), connack.set())
        c.on_message = self._on_message
        where = f"the broker at {self.host}:{self.port}"
        try:
            c.connect(self.hostname or self.host, self.port, keepalive=30)
        except ssl.SSLError as e:
            raise BrokerUnreachable(f"TLS to {where} failed: {e.reason or e}") from None
        except OSError as e:
            raise BrokerUnreachable(f"cannot reach {where}: {e.strerror or e}") from None
        c.loop_start()
        if not connack.wait(self.timeout):
            c.loop_stop()
            raise BrokerUnreachable(f"{where} did not answer the admin's CONNECT")
        if self._connack.is_failure:
            c.loop_stop()
            raise AdminRefused(f"{where} refused the admin login ({self._connack}): wrong admin password?")
        self.client = c
        subscribed = c.subscribe(TOPIC + "/response", qos=1)
        if subscribed[0] != mqtt.MQTT_ERR_SUCCESS:
            self.close()
            raise BrokerUnreachable(f"{where}: cannot subscribe to the dynsec responses")
        self.command({"command": "getDefaultACLAccess"})  # answers once the subscription holds
        return self

    def close(self):
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def _on_message(self, client, userdata, msg):
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._answered:
            for r in responses:
                if str(r.get("correlationData", "")).startswith(self._tag):
                    self._answers[r["correlationData"]] = r
            self._answered.notify_all()

    def command(self, cmd):
        """Send one dynsec command and return its response; BrokerAdminError if refused."""
        r = self.try_command(cmd)
        if "error" in r:
            raise BrokerAdminError(f"the broker refused {cmd['command']}: {r['error']}")
        return r

    def try_command(self, cmd):
        """One dynsec command's response, its "error" included."""
        self.connect()
        cid = f"{self._tag}-{next(self._ids)}"
        self.client.publish(TOPIC, json.dumps({"commands": [dict(cmd, correlationData=cid)]}), qos=1)
        with self._answered:
            if not self._answered.wait_for(lambda: cid in self._answers, self.timeout):
                raise BrokerUnreachable(
                    f"no answer from the dynamic security plugin of {self.host}:{self.port} "
                    f"to {cmd['command']} (is the plugin loaded?)"
                )
            return self._answers.pop(cid)

    # clients and roles
    def client_info(self, username):
        """The dynsec record of a client, or None."""
        r = self.try_command({"command": "getClient", "username": username})
        if "error" in r:
            if "not found" in r["error"].lower():
                return None
            raise BrokerAdminError(f"getClient {username}: {r['error']}")
        return r["data"]["client"]

    def exists(self, unit_id):
        return self.client_info(check_unit_id(unit_id)) is not None

    def _known(self, unit_id):
        info = self.client_info(check_unit_id(unit_id))
        if info is None:
            raise UnknownUnit(f"unit {unit_id} has no credentials on the broker {self.host}:{self.port}")
        return info

    def _set_role(self, rolename, acls):
        """Create the role with exactly these ACLs, or make an existing one so."""
        r = self.try_command({"command": "createRole", "rolename": rolename, "acls": acls})
        if "error" not in r:
            return
        if "already exists" not in r["error"].lower():
            raise BrokerAdminError(f"createRole {rolename}: {r['error']}")
        old = self.command({"command": "getRole", "rolename": rolename})["data"]["role"]["acls"]
        for acl in old:
            self.command({"command": "removeRoleACL", "rolename": rolename, **acl})
        for acl in acls:
            self.command({"command": "addRoleACL", "rolename": rolename, **acl})

    def _set_client(self, username, rolename, password, clientid=None):
        """Create the client, or give an existing one this password, role and id; enabled."""
        cmd = {"command": "createClient", "username": username, "password": password}
        cmd.update({"roles": [{"rolename": rolename}]}, **({"clientid": clientid} if clientid else {}))
        r = self.try_command(cmd)
        if "error" not in r:
            return
        if "already exists" not in r["error"].lower():
            raise BrokerAdminError(f"createClient {username}: {r['error']}")
        self.command({"command": "setClientPassword", "username": username, "password": password})
        if clientid:
            self.command({"command": "setClientId", "username": username, "clientid": clientid})
        self.try_command({"command": "addClientRole", "username": username, "rolename": rolename})
        self.command({"command": "enableClient", "username": username})

    def add_unit(self, unit_id, replace=False):
        """Credentials for a unit; returns its new password. UnitExists if it has some,
        unless `replace` (then: a new password, the role made right, enabled)."""
        check_unit_id(unit_id)
        if not replace and self.exists(unit_id):
            raise UnitExists(f"unit {unit_id} already has credentials on the broker (replace them?)")
        password = new_password()
        role = f"unit-{unit_id}"
        self._set_role(role, unit_acls(unit_id))
        try:
            self._set_client(unit_id, role, password, clientid=unit_id)
        except BrokerAdminError:
            if not replace:
                self.try_command({"command": "deleteRole", "rolename": role})
            raise
        return password

    def rotate(self, unit_id):
        """A new password; the old one is refused from now on and a connected unit is cut off."""
        self._known(unit_id)
        password = new_password()
        self.command({"command": "setClientPassword", "username": unit_id, "password": password})
        return password

    def set_password(self, unit_id, password):
        """Give the unit this password (provisioning puts the old one back when it undoes)."""
        self._known(unit_id)
        self.command({"command": "setClientPassword", "username": unit_id, "password": password})

    def units(self):
        """{unit_id: enabled} of every unit with credentials."""
        clients = self.command({"command": "listClients", "verbose": True})["data"]["clients"]
        return {c["username"]: not c.get("disabled", False) for c in clients if c["username"] not in RESERVED}

    def decommission(self, unit_id):
        """Disable the unit's client: refused from now on, and cut off if connected."""
        self._known(unit_id)
        self.command({"command": "disableClient", "username": unit_id})

    def enable(self, unit_id):
        self._known(unit_id)
        self.command({"command": "enableClient", "username": unit_id})

    def is_enabled(self, unit_id):
        return not self._known(unit_id).get("disabled", False)

    def remove(self, unit_id):
        """Delete the unit's client and role (undoes add_unit); no error if there is none."""
        check_unit_id(unit_id)
        self.try_command({"command": "deleteClient", "username": unit_id})
        self.try_command({"command": "deleteRole", "rolename": f"unit-{unit_id}"})

    # the broker's own clients (provisioning/mosquitto.py, at the broker's first start)
    def set_gateway(self, password):
        self._set_role(GATEWAY, gateway_acls())
        self._set_client(GATEWAY, GATEWAY, password)

    def set_admin_password(self, password):
        """The broker cuts the admin's own connection as it applies this, before it can
        answer: the proof is logging in again with the new password."""
        self.connect()
        cid = f"{self._tag}-admin-password"
        cmd = {"command": "setClientPassword", "username": self.user, "password": password}
        self.client.publish(TOPIC, json.dumps({"commands": [dict(cmd, correlationData=cid)]}), qos=1)
        with self._answered:
            done = lambda: cid in self._answers or not self.client.is_connected()  # noqa: E731
            self._answered.wait_for(done, self.timeout)
        self.close()
        self.password = password
        self.connect()
