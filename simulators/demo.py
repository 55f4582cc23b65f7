"""`make demo` / `siaga demo`: a broker, the gateway and a virtual fleet of Palangka
Raya, on embedded defaults, until Ctrl-C or SIGTERM; nothing is left running after."""

import os
import signal
import threading
from pathlib import Path

from gateway.process import GatewayProcess
from provisioning.mosquitto import Mosquitto, die_with_parent, free_port, port_is_free

from .fleet import Fleet, demo_specs


def _port(env, default, what):
    wanted = int(os.environ.get(env, default))
    if port_is_free(wanted):
        return wanted
    port = free_port()
    print(f"  {what} port {wanted} is taken; using {port} instead (set {env} to choose)")
    return port


def run_demo():
    die_with_parent(signal.SIGTERM)  # `make` killed: stop everything too
    data = Path(os.environ.get("SIAGA_DATA_DIR", "var")).resolve()
    print("Siaga demo")
    mqtt_port = _port("SIAGA_MQTT_PORT", 1883, "MQTT")
    http_port = _port("SIAGA_HTTP_PORT", 8080, "HTTP")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    broker = Mosquitto(data / "broker", mqtt_port).start()
    gateway = fleet = None
    try:
        gateway = GatewayProcess(data, mqtt_port, http_port, client_id="siaga-gateway").start()
        api = gateway.url
        specs = demo_specs(6)
        for spec in specs:
            gateway.register(**spec.registration())
        fleet = Fleet(specs, data, ("127.0.0.1", mqtt_port)).start()
        print(f"  broker    Mosquitto on 127.0.0.1:{mqtt_port} (log {broker.data_dir / 'mosquitto.log'})")
        print(f"  gateway   {api}/api/v1/units  (log {data / 'gateway.log'}, database {data / 'siaga.db'})")
        print(f"  fleet     {', '.join(s.unit_id + ' ' + s.callsign for s in specs)}")
        print(f"            flash folders in {data / 'flash'}, crews press keys on missions")
        print(
            "  try       .venv/bin/siaga units"
            + ("" if http_port == 8080 else f"  (with SIAGA_HTTP_PORT={http_port})")
        )
        print("            .venv/bin/siaga sim press amb-01 3       (en route)")
        print("            .venv/bin/siaga sim press dmk-01 0 --long (emergency)")
        print("Ctrl-C stops it all.", flush=True)
        done.wait()
    finally:
        print("stopping ...", flush=True)
        if fleet:
            fleet.stop()
        if gateway:
            gateway.stop()
        broker.stop()
        print("stopped.")
    return 0
