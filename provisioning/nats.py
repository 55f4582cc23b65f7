"""A clustered MQTT broker: NATS server nodes with their MQTT listener and JetStream
(Debian's nats-server, 2.9.10), started here as local processes on free ports, as
provisioning/mosquitto.py starts Mosquitto. For deployments that cannot stop; Mosquitto
stays the single-host default. docs/brokers.md "The NATS cluster".

The data folder (0700) holds

    cluster.json        the nodes' names and ports (kept: routes name them)
    broker.json         where units and the gateway connect (kind "nats"), which CA
    node-N.conf         each node's configuration (0600: the route password); node-N/
                        its JetStream store, pid, nats.log, stderr.log (a crash's trace)
    auth.conf           the users every node includes (provisioning/nats_admin.py)
    users.json          the units' bcrypt hashes, enabled or locked (0600)
    gateway.password, admin.password, route.password, gateway.toml, ca/
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .nats_admin import monitoring
from .processes import die_with_parent, free_port, wait_for_port

INSTALL_HINT = "install it with: apt-get install nats-server  (Debian's package)"
ROUTE_USER = "route"
MAX_ACK_PENDING = 1024  # per QoS 1 subscription: messages sent and not yet acknowledged
ACK_WAIT_S = 10


def nats_bin():
    path = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server") if Path(p).exists()), None
    )
    if path is None:
        raise FileNotFoundError("nats-server is not installed; " + INSTALL_HINT)
    return path


def _free_ports(count, host):
    ports = set()
    while len(ports) < count:
        ports.add(free_port(host))
    return sorted(ports)


class NatsCluster:
    """`nodes` NATS servers in one cluster: routes between them (TLS both ways with a
    peer certificate of the project CA, a route password), JetStream (a store folder per
    node), an MQTT listener on each (TLS with the project CA's server certificate, MQTT
    sessions and QoS 1 messages in streams of `min(3, nodes)` replicas), the NATS client
    port (TLS; no user may log in there today), a monitoring port on 127.0.0.1 only.
    Logins: the gateway's and each unit's (provisioning/nats_admin.py)."""

    kind = "nats"

    def __init__(self, data_dir, nodes=3, bind="127.0.0.1", ca_dir=None, names=(), name="siaga"):
        self.data_dir = Path(data_dir).resolve()
        self.bind = bind
        self.host = "127.0.0.1" if bind in ("0.0.0.0", "") else bind
        self.ca_dir = Path(ca_dir).resolve() if ca_dir else self.data_dir / "ca"
        self.names = tuple(names)
        self.name = name
        self.layout = self._layout(nodes)
        self.replicas = min(3, len(self.layout["nodes"]))
        self.procs = [None] * len(self.layout["nodes"])
        self.ca = None
        self.peer = None

    def _layout(self, count):
        """The nodes' names and ports: those of cluster.json if the folder has one."""
        path = self.data_dir / "cluster.json"
        if path.exists():
            return json.loads(path.read_text())
        ports = iter(_free_ports(4 * count, self.host))
        nodes = [
            {"name": f"node-{i + 1}", "client": next(ports), "cluster": next(ports), "mqtt": next(ports)}
            for i in range(count)
        ]
        for node in nodes:
            node["http"] = next(ports)
        return {"name": self.name, "nodes": nodes}

    @property
    def nodes(self):
        return self.layout["nodes"]

    # where clients go
    def mqtt_addresses(self):
        """[(host, port)] of every node's MQTT listener (TLS)."""
        return [(self.host, n["mqtt"]) for n in self.nodes]

    @property
    def urls(self):
        """The NATS client URLs (TLS) of the nodes."""
        return [f"nats://{self.host}:{n['client']}" for n in self.nodes]

    @property
    def tls_port(self):
        """The first node's MQTT port: where a client that knows one address goes."""
        return self.nodes[0]["mqtt"]

    port = tls_port

    @property
    def gateway_password_path(self):
        return self.data_dir / "gateway.password"

    @property
    def admin_password_path(self):
        return self.data_dir / "admin.password"

    @property
    def gateway_config_path(self):
        return self.data_dir / "gateway.toml"

    def gateway_credentials(self):
        """(user, password, CA file) the gateway logs in with."""
        from .broker_admin import GATEWAY, read_secret

        return GATEWAY, read_secret(self.gateway_password_path), str(self.ca.ca_cert)

    def mqtt_list(self):
        """Every node's MQTT listener as the gateway's `mqtt` setting: "h1:p1,h2:p2,h3:p3"."""
        return ",".join(f"{host}:{port}" for host, port in self.mqtt_addresses())

    def gateway_flags(self):
        """`siaga gateway` flags for this broker: gateway.toml (user, password file, CA,
        and `mqtt`, every node) and `--mqtt` with every node again, since a launcher's own
        `--mqtt` (GatewayProcess passes one) would win over the file's."""
        return ["--config", str(self.gateway_config_path), "--mqtt", self.mqtt_list()]

    def node_of(self, client_id):
        """The index of the running node an MQTT client id is connected to (its
        monitoring /connz), or None."""
        for i in self.running():
            try:
                connz = monitoring(self.nodes[i]["http"], f"/connz?mqtt_client={client_id}")
            except (OSError, ValueError):
                continue
            if connz.get("num_connections"):
                return i
        return None

    def admin(self, **kw):
        """The NatsAdmin of this cluster (units' credentials)."""
        from .nats_admin import NatsAdmin

        return NatsAdmin.from_data_dir(self.data_dir, **kw)

    # configuration
    def _prepare(self):
        """The CA, certificates, secrets, users and every node's config (once; kept)."""
        from .broker_admin import new_password, read_secret, write_secret
        from .ca import ensure_ca, ensure_peer_cert

        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self.ca = ensure_ca(self.ca_dir, names=self.names)
        self.peer = ensure_peer_cert(self.ca_dir, names=self.names)
        for path in (self.gateway_password_path, self.admin_password_path, self.data_dir / "route.password"):
            if not path.exists():
                write_secret(path, new_password())
        (self.data_dir / "cluster.json").write_text(json.dumps(self.layout, indent=1) + "\n")
        info = {"kind": self.kind, "host": self.host, "tls_port": self.tls_port}
        info.update(addresses=self.mqtt_addresses(), cafile=str(self.ca.ca_cert))
        (self.data_dir / "broker.json").write_text(json.dumps(info, indent=1) + "\n")
        self._write_gateway_config()
        route_password = read_secret(self.data_dir / "route.password")
        for i in range(len(self.nodes)):
            self._write_node_config(i, route_password)
        self._write_users()

    def _write_users(self):
        """users.json with the gateway's and the admin's hashes (made once), auth.conf."""
        from .broker_admin import read_secret, write_secret
        from .nats_admin import bcrypt

        admin = self.admin()
        state = admin._load()
        for who, path in (("gateway", self.gateway_password_path), ("admin", self.admin_password_path)):
            if not state.get(who):
                state[who] = bcrypt(read_secret(path))
        write_secret(admin.users_path, json.dumps(state, indent=1))
        admin.write_auth(state)

    def _write_gateway_config(self):
        from .broker_admin import GATEWAY

        values = {
            "mqtt": self.mqtt_list(),  # every node: the gateway moves to the next (issue 16)
            "mqtt_user": GATEWAY,
            "mqtt_password_file": self.gateway_password_path,
            "mqtt_ca": self.ca.ca_cert,
        }
        lines = [f"{k} = {json.dumps(str(v))}" for k, v in values.items()]
        self.gateway_config_path.write_text(
            "# The gateway's login on the NATS cluster, every node: siaga gateway --config THIS_FILE\n"
            + "\n".join(lines)
            + "\n"
        )

    def node_config_path(self, i):
        return self.data_dir / f"{self.nodes[i]['name']}.conf"

    def _tls(self, cert, key, timeout):
        return {
            "cert_file": str(cert),
            "key_file": str(key),
            "ca_file": str(self.ca.ca_cert),
            "timeout": timeout,
        }

    def _write_node_config(self, i, route_password):
        node = self.nodes[i]
        folder = self.data_dir / node["name"]
        folder.mkdir(exist_ok=True)
        routes = [
            f"nats-route://{ROUTE_USER}:{route_password}@{self.host}:{n['cluster']}"
            for n in self.nodes
            if n is not node
        ]
        config = {
            "server_name": f"{self.name}-{node['name']}",
            "listen": f"{self.bind}:{node['client']}",
            "http": f"127.0.0.1:{node['http']}",  # monitoring has no login: loopback only
            "pid_file": str(folder / "nats.pid"),
            "log_file": str(folder / "nats.log"),
            "logfile_size_limit": 10 << 20,
            "tls": self._tls(self.ca.server_cert, self.ca.server_key, 5),
            "jetstream": {"store_dir": str(folder / "jetstream")},
            "cluster": {
                "name": self.name,
                "listen": f"{self.bind}:{node['cluster']}",
                "authorization": {"user": ROUTE_USER, "password": route_password, "timeout": 5},
                "routes": routes,
                "tls": self._tls(*self.peer, 5),  # nats-server verifies both ends of a route
            },
            "mqtt": {
                "listen": f"{self.bind}:{node['mqtt']}",
                # a unit's TLS handshake (EC P-256 on an ESP32, over LTE) takes seconds
                "tls": self._tls(self.ca.server_cert, self.ca.server_key, 10),
                "stream_replicas": self.replicas,
                # Said explicitly: 2.9.10 reapplies them at every reload, and an unset
                # max_ack_pending as 0, which stops delivery to every existing QoS 1
                # subscription (docs/brokers.md).
                "max_ack_pending": MAX_ACK_PENDING,
                # A message sent and not acknowledged is sent again after this, also
                # when its session moved to another node (2.9.10 does not resend at once
                # on a resumed session): 10 s, not the default 30 s.
                "ack_wait": f"{ACK_WAIT_S}s",
            },
        }
        if len(self.nodes) == 1:
            del config["cluster"]  # one node (tests, a trial): a cluster block needs routes
        text = "# Written by provisioning/nats.py\n"
        text += "".join(f"{k}: {json.dumps(v, indent=1)}\n" for k, v in config.items())
        text += 'include "auth.conf"\n'
        path = self.node_config_path(i)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the route password
        with os.fdopen(fd, "w") as f:
            f.write(text)

    # processes
    def start(self, timeout=30.0):
        self._prepare()
        for i in range(len(self.nodes)):
            self._spawn(i)
        self.wait_ready(timeout=timeout)
        return self

    def _spawn(self, i):
        if self.procs[i] is not None and self.procs[i].poll() is None:
            return
        folder = self.data_dir / self.nodes[i]["name"]
        with open(folder / "stderr.log", "ab") as stderr:  # a crash's trace (the log is nats.log)
            self.procs[i] = subprocess.Popen(
                [nats_bin(), "-c", str(self.node_config_path(i))],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=die_with_parent,
            )

    def start_node(self, i, timeout=30.0):
        """Start node i again (after stop_node or kill_node) and wait until it serves."""
        if self.ca is None:
            self._prepare()
        self._spawn(i)
        self.wait_ready([i], timeout=timeout)

    def stop_node(self, i, sig=signal.SIGTERM):
        proc = self.procs[i]
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill_node(self, i):
        """SIGKILL: the node dies as a crashed host's would, nothing flushed, no wills sent."""
        self.stop_node(i, signal.SIGKILL)

    def stop(self):
        for i in range(len(self.nodes)):
            self.stop_node(i)

    def running(self):
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def log(self, i):
        path = self.data_dir / self.nodes[i]["name"] / "nats.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # readiness
    def wait_ready(self, which=None, timeout=30.0):
        """Until each node in `which` (default: all running) is routed to every other
        running node, sees a JetStream meta leader, and its MQTT listener logs the
        gateway in (which also makes the MQTT streams at the first start)."""
        which = self.running() if which is None else which
        deadline = time.monotonic() + timeout
        for i in which:
            self._wait_node(i, deadline)

    def _wait_node(self, i, deadline):
        node, proc = self.nodes[i], self.procs[i]
        try:
            wait_for_port(node["mqtt"], self.host, max(0.1, deadline - time.monotonic()), proc)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"NATS {node['name']}: {e}\n{self.log(i)[-2000:]}") from None
        for what, check in (("its routes", self._routed), ("a JetStream meta leader", self._has_leader)):
            while not check(i):
                self._check_time(i, deadline, what)
                time.sleep(0.1)
        while not self._mqtt_answers(i):
            self._check_time(i, deadline, "its MQTT listener to log the gateway in")
            time.sleep(0.2)

    def _check_time(self, i, deadline, what):
        if self.procs[i].poll() is not None:
            raise RuntimeError(f"NATS {self.nodes[i]['name']} exited\n{self.log(i)[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"NATS {self.nodes[i]['name']}: no {what} in time\n{self.log(i)[-2000:]}")

    def _routed(self, i):
        others = len(self.running()) - 1
        if others == 0:
            return True
        try:
            return monitoring(self.nodes[i]["http"], "/routez")["num_routes"] >= others
        except (OSError, ValueError):
            return False

    def _has_leader(self, i):
        try:
            jsz = monitoring(self.nodes[i]["http"], "/jsz")
        except (OSError, ValueError):
            return False
        return len(self.nodes) == 1 or bool(jsz.get("meta_cluster", {}).get("leader"))

    def _mqtt_answers(self, i):
        from .nats_admin import mqtt_login

        user, password, cafile = self.gateway_credentials()
        return mqtt_login(self.host, self.nodes[i]["mqtt"], user, password, cafile)
