"""`make demo` / `siaga demo`: a broker, the gateway and a virtual fleet of Palangka
Raya, on embedded defaults, until Ctrl-C or SIGTERM; nothing is left running after.

Before the gateway starts, the demo town (simulators/town.py) is written into the data
folder and imported as its map (provisioning/mapimport.py: the road graph, and the
basemap when tilemaker is installed); the units drive on its roads. A map the centre
imported itself (not a demo map) is kept, and the units drive on that."""

import json
import os
import secrets
import shutil
import signal
import threading

from gateway import auth, config
from gateway.errors import Conflict, SiagaError
from gateway.roads import RoadGraphError, read_graph
from gateway.store_pg import redacted
from provisioning.mapimport import import_map, sha256
from provisioning.mosquitto import Mosquitto
from provisioning.nats import NatsCluster
from provisioning.processes import die_with_parent, free_port, port_is_free

from .fleet import demo_specs
from .gateway_process import GatewayProcess
from .provisioned_fleet import ProvisionedFleet
from .roaddrive import load_graph
from .town import write_town

TOWN_FILE = "demo-town.osm.pbf"  # in the data folder, beside map/


def _port(env, default, what):
    return port_or_free(int(os.environ.get(env, default)), what, f"set {env} to choose")


def port_or_free(wanted, what, how):
    """`wanted` if it is free, else a free port (and say so)."""
    if port_is_free(wanted):
        return wanted
    port = free_port()
    print(f"  {what} port {wanted} is taken; using {port} instead ({how})")
    return port


def demo_password(data):
    """SIAGA_DEMO_PASSWORD, or the one made at the demo's first start and kept in its data
    folder (0600), so that a restart logs no open browser out."""
    if os.environ.get("SIAGA_DEMO_PASSWORD"):
        return os.environ["SIAGA_DEMO_PASSWORD"]
    path = data / "demo.password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(9)
    data.mkdir(parents=True, exist_ok=True)
    path.touch(0o600)
    path.write_text(password + "\n")
    return password


def demo_login(data, name="dispatcher", database_url=None):
    """The demo's dispatcher login in the gateway's database (demo_password; `database_url`
    as auth.open_db takes it)."""
    password = demo_password(data)
    store = auth.open_db(data, database_url)
    try:
        with store.atomic() as db:
            try:
                auth.add_user(db, name, "dispatcher", password)
            except Conflict:
                auth.set_password(db, name, password)
    finally:
        store.close()
    return name, password


def _map_meta(data):
    try:
        return json.loads((data / "map" / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _imported_is_current(data, meta, town):
    """Whether <data>/map already holds this town: same file, a readable graph, the
    basemap if tilemaker could make one, and no speeds file changed since."""
    if not meta or not meta.get("demo") or meta.get("sha256") != sha256(town):
        return False
    if shutil.which("tilemaker") and not meta.get("basemap"):
        return False
    speeds = data / "roads.toml"
    if speeds.exists() and speeds.stat().st_mtime > meta.get("imported_at", 0):
        return False
    try:
        read_graph(data / "map" / "roads.graph")
    except RoadGraphError:
        return False
    return True


def demo_map(data, say=print):
    """The map the demo's units drive on and the gateway routes over: (graph, what it is).
    The demo town is written to <data>/demo-town.osm.pbf and imported at the first start
    (again when it changed or its map is damaged), re-used after; a map that is not a
    demo map is the centre's own and stays."""
    meta = _map_meta(data)
    if meta and meta.get("demo") is False:
        graph = load_graph(data)
        if graph is not None:
            say(f"  using the map imported from {meta.get('source')} ({data / 'map'}) ...", flush=True)
            return graph, f"imported from {meta.get('source')}"
    town = write_town(data / TOWN_FILE)
    if _imported_is_current(data, meta, town):
        say(f"  using the demo map imported before ({data / 'map'}) ...", flush=True)
    else:
        say(
            f"  importing the demo map, a synthetic town with a river and two bridges ({data / 'map'}) ...",
            flush=True,
        )
        _import_town(town, data, say)
    has_basemap = (_map_meta(data) or {}).get("basemap")
    what = "the demo town (synthetic, not real streets)"
    return load_graph(data), what + ("" if has_basemap else "; no basemap without tilemaker (make tilemaker)")


def _import_town(town, data, say):
    try:
        import_map(town, data, progress=False)
    except SiagaError as e:  # e.g. tilemaker failed: the roads without the basemap
        say(f"  the basemap failed ({e.message}); importing the roads only ...", flush=True)
        import_map(town, data, progress=False, basemap=False)


class Demo:
    """What `siaga demo` and `siaga demo-ha` share: the data folder, the broker, the demo
    map and login, gateways on the demo's broker, the provisioned fleet, its description,
    the wait for Ctrl-C or SIGTERM, and the stop of all it started (`with Demo(...)`).
    Its ports are chosen first: MQTT, and `gateways` HTTP ports (SIAGA_HTTP_PORT, the
    next ones after it)."""

    def __init__(self, title, gateways=1, broker="mosquitto"):
        die_with_parent(signal.SIGTERM)  # `make` killed: stop everything too
        self.data = config.data_dir().resolve()
        print(title)
        self.mqtt_port = _port("SIAGA_MQTT_PORT", 1883, "MQTT")
        first = _port("SIAGA_HTTP_PORT", 8080, "HTTP")
        self.http_ports = [first] + [
            port_or_free(first + i, "HTTP", "the next gateway's") for i in range(1, gateways)
        ]
        self.done = threading.Event()
        self.broker_kind = broker
        self.broker = self.fleet = self.roads = self.login = None
        self.gateways = []
        self.on_stop = []  # what else to stop, after the gateways (a database)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.done.set())
        if self.broker_kind == "nats":  # the clustered broker (docs/brokers.md): ports of its own
            print("  starting the broker (a 3-node NATS cluster, MQTT over TLS from the project CA) ...")
            self.broker = NatsCluster(self.data / "nats").start()
            self.mqtt_port = self.broker.port
            return self
        print(
            f"  starting the broker (Mosquitto, TLS from the project CA) on port {self.mqtt_port} ...",
            flush=True,
        )
        self.broker = Mosquitto(self.data / "broker", self.mqtt_port, secure=True).start()  # TLS, dynsec
        return self

    def prepare(self, database_url=None):
        """The map (imported at the first start) and the dispatcher's login."""
        self.roads = demo_map(self.data)
        self.login = demo_login(self.data, database_url=database_url)

    def start_gateway(self, http_port, extra=(), **kw):
        """A gateway on the demo's broker and data folder (GatewayProcess's `kw`)."""
        gateway = GatewayProcess(
            self.data,
            self.mqtt_port,
            http_port,
            client_id="siaga-gateway",
            extra=[*self.broker.gateway_flags(), *extra],
            **kw,
        )
        self.gateways.append(gateway)
        return gateway.start()

    def start_fleet(self, gateway):
        """The six units, provisioned and registered through `gateway`'s API."""
        self.specs = demo_specs(6)
        print(f"  provisioning {len(self.specs)} virtual boards over their serial ports ...", flush=True)
        self.fleet = ProvisionedFleet(
            self.specs, self.data, self.broker, gateway, roads=self.roads[0]
        ).start()

    def describe(self, api, gateway_lines, try_env):
        """What runs and how to use it: the broker, `gateway_lines`, the map's login (on
        `api`), the roads, a token, the fleet and a few commands (with `try_env` set)."""
        data, login, gateway = self.data, self.login, self.gateways[0]
        if self.broker_kind == "nats":
            broker = (
                f"NATS cluster, MQTT over TLS on {self.broker.mqtt_list()} (logs in {self.broker.data_dir})"
            )
        else:
            log = self.broker.data_dir / "mosquitto.log"
            broker = f"Mosquitto, TLS on 127.0.0.1:{self.mqtt_port} (log {log})"
        print(f"  broker    {broker}; each unit logs in as itself")
        for line in gateway_lines:
            print(line)
        print(f"  map       {api}/  login {login[0]} / {login[1]}  (kept in {data / 'demo.password'})")
        print(f"  roads     {self.roads[1]}: the units drive on it, /nearest ranks by drive time")
        print(f"  token     export SIAGA_TOKEN={gateway.token}  (a supervisor's, for siaga and curl)")
        print(f'  curl      curl -H "Authorization: Bearer $SIAGA_TOKEN" {api}/api/v1/units')
        print(f"  fleet     {', '.join(s.unit_id + ' ' + s.callsign for s in self.specs)}")
        print(f"            flash folders in {data / 'flash'}, crews press keys on missions")
        print("  try       .venv/bin/siaga units" + (f"  (with {try_env})" if try_env else ""))
        print("            .venv/bin/siaga sim press amb-01 3       (en route)")
        print("            .venv/bin/siaga sim press dmk-01 0 --long (emergency)")

    def wait(self, every=None, interval=1.0):
        """Until Ctrl-C or SIGTERM; `every()` once a second meanwhile, if given."""
        print("Ctrl-C stops it all.", flush=True)
        while not self.done.wait(interval if every else None):
            every()

    def __exit__(self, *exc):
        print("stopping ...", flush=True)
        try:
            if self.fleet:
                self.fleet.stop()
            for gateway in self.gateways:
                gateway.stop()
            for stop in reversed(self.on_stop):
                stop()
        finally:
            self.broker.stop()
        print("stopped.")


def run_demo(broker="mosquitto"):
    with Demo("Siaga demo", broker=broker) as demo:
        http_port = demo.http_ports[0]
        demo.prepare()
        print(f"  starting the gateway on port {http_port} ...", flush=True)
        gateway = demo.start_gateway(http_port)
        demo.start_fleet(gateway)
        api, data = gateway.url, demo.data
        url = config.value("database_url")  # the gateway reads it too, from the environment
        database = f"PostgreSQL {redacted(url)}" if url else data / "siaga.db"
        line = f"  gateway   {api}/api/v1/units  (log {data / 'gateway.log'}, database {database})"
        demo.describe(api, [line], "" if http_port == 8080 else f"SIAGA_HTTP_PORT={http_port}")
        demo.wait()
    return 0
