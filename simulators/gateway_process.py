"""The gateway as a process of its own, started and watched by another: the demo, the
tests, the benchmarks. It dies with its parent."""

import subprocess
import sys
import time
from pathlib import Path

from gateway.client import Client
from gateway.errors import SiagaError
from provisioning.processes import die_with_parent, free_port

REPO = Path(__file__).resolve().parent.parent


def wait_until(predicate, timeout=15.0, interval=0.05, what="condition"):
    """Poll `predicate` until it returns something truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value {last!r}")


def make_token(data_dir, role, name, replace=False, database_url=""):
    """An API token made directly in the gateway's database in `data_dir` (what
    `siaga token create` does), so it works before the gateway starts; `replace`: the
    tokens of that name made before are revoked (a launcher's own token, new at each
    start, leaves none behind that stays valid)."""
    from gateway.auth import create_token, open_db, revoke_token

    store = open_db(data_dir, database_url)
    try:
        with store.atomic() as db:
            if replace:
                revoke_token(db, name)
            return create_token(db, role, name)[0]
    finally:
        store.close()


class GatewayProcess:
    def __init__(
        self,
        data_dir,
        mqtt_port,
        http_port=None,
        client_id=None,
        extra=(),
        database_url="",
        log_name="gateway.log",
    ):
        """`log_name`: its log file in `data_dir` (two gateways on one data folder: two names)."""
        self.data_dir = Path(data_dir)
        self.log_name = log_name
        self.database_url = database_url
        self.mqtt_port = mqtt_port
        self.http_port = http_port or free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.extra = ["--mqtt-client-id", client_id or f"gw-{self.http_port}", *extra]
        if database_url:
            self.extra += ["--database-url", database_url, "--instance", f"gw-{self.http_port}"]
        self.proc = None
        self.token = None  # a supervisor API token, made in start(); request() sends it

    def store_flags(self):
        """The flags that give `siaga user` / `siaga token` this gateway's database."""
        return [
            "--data",
            str(self.data_dir),
            *(["--database-url", self.database_url] if self.database_url else []),
        ]

    @property
    def log_path(self):
        return self.data_dir / self.log_name

    def start(self, timeout=20):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.token is None:
            self.token = make_token(
                self.data_dir, "supervisor", f"gateway-process-{self.http_port}", True, self.database_url
            )
        log = open(self.log_path, "ab")
        cmd = [
            sys.executable,
            "-m",
            "siaga",
            "gateway",
            "--mqtt",
            f"127.0.0.1:{self.mqtt_port}",
            "--http",
            str(self.http_port),
            "--data",
            str(self.data_dir),
            *self.extra,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent, cwd=REPO
        )
        log.close()
        wait_until(self._ready, timeout, what="the gateway's health endpoint")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("the gateway exited: " + self.log_path.read_text()[-2000:])
        try:
            return self.get("/api/v1/health")[1]["mqtt_connected"]
        except SiagaError:  # not answering yet
            return False

    @property
    def headers(self):
        """What an API call sends to be let in: this process's supervisor token."""
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method, path, body=None, token=None):
        """(status, JSON body) of one API call, with this process's token or `token`; an
        HTTP error is a status, not an exception."""
        client = Client(self.url, token or self.token)
        try:
            return client.request(method, path, body)
        finally:
            client.close()

    def get(self, path):
        return self.request("GET", path)

    def unit(self, unit_id):
        return self.get(f"/api/v1/units/{unit_id}")[1]

    def register(self, unit_id, kind="ambulance", **extra):
        body = {"unit_id": unit_id, "kind": kind, "callsign": unit_id.upper(), **extra}
        status, reply = self.request("POST", "/api/v1/units", body)
        if status != 201:
            raise RuntimeError(f"registering {unit_id}: {status} {reply}")
        return reply

    def kill(self):
        """A crash: SIGKILL, nothing saved that was not committed."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
