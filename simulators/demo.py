"""`make demo` / `siaga demo`: a broker, the gateway and a virtual fleet of Palangka
Raya, on embedded defaults, until Ctrl-C or SIGTERM; nothing is left running after."""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from provisioning.mosquitto import Mosquitto, die_with_parent, free_port, port_is_free

from .fleet import Fleet, demo_specs, register


def _port(env, default, what):
    wanted = int(os.environ.get(env, default))
    if port_is_free(wanted):
        return wanted
    port = free_port()
    print(f"  {what} port {wanted} is taken; using {port} instead (set {env} to choose)")
    return port


def _wait_http(url, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited with {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the gateway did not answer at {url}")


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
        log = open(data / "gateway.log", "ab")
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "gateway",
                "--mqtt",
                f"127.0.0.1:{mqtt_port}",
                "--http",
                str(http_port),
                "--data",
                str(data),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        api = f"http://127.0.0.1:{http_port}"
        _wait_http(api + "/api/v1/health", gateway)
        specs = demo_specs(6)
        for spec in specs:
            register(api, spec)
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
        if gateway and gateway.poll() is None:
            gateway.terminate()
            try:
                gateway.wait(10)
            except subprocess.TimeoutExpired:
                gateway.kill()
        broker.stop()
        print("stopped.")
    return 0
