"""Start Mosquitto, a real broker process, from the repository's configuration."""

import getpass
import glob
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from .processes import die_with_parent, free_port, wait_for_port

TEMPLATE = Path(__file__).with_name("mosquitto.conf")
INSTALL_HINT = "install it with: apt-get install mosquitto  (Debian's package)"


def mosquitto_bin():
    path = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if path is None:
        raise FileNotFoundError("mosquitto is not installed; " + INSTALL_HINT)
    return path


def dynsec_plugin():
    """Path of Mosquitto's dynamic security plugin (Debian: in the mosquitto package)."""
    for prefix in ("/usr/lib", "/usr/local/lib"):
        for path in sorted(glob.glob(f"{prefix}/*/mosquitto_dynamic_security.so")) + sorted(
            glob.glob(f"{prefix}/mosquitto_dynamic_security.so")
        ):
            return path
    raise FileNotFoundError("Mosquitto's dynamic security plugin is not installed; " + INSTALL_HINT)


class Mosquitto:
    """A Mosquitto process. Plain (the default): one listener, anonymous clients allowed.
    Secure: one TLS listener (`tls_port`, also `port`) with a certificate from the
    project CA (`ca_dir`, default <data>/ca), logins and topics checked by the dynamic
    security plugin, no anonymous clients; `admin` and `gateway` passwords in the data
    folder (admin.password, gateway.password, 0600). See docs/security.md "Broker security"."""

    def __init__(self, data_dir, port=None, bind="127.0.0.1", secure=False, ca_dir=None, names=()):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port(bind)
        self.bind = bind
        self.secure = secure
        self.tls_port = self.port if secure else None
        self.ca_dir = Path(ca_dir).resolve() if ca_dir else self.data_dir / "ca"
        self.names = tuple(names)  # further names or addresses the units reach the broker by
        self.ca = None
        self.proc = None

    @property
    def dynsec_path(self):
        return self.data_dir / "dynamic-security.json"

    @property
    def admin_password_path(self):
        return self.data_dir / "admin.password"

    @property
    def gateway_password_path(self):
        return self.data_dir / "gateway.password"

    def admin(self, **kw):
        """A BrokerAdmin logged in as this broker's admin (secure mode)."""
        from .broker_admin import BrokerAdmin

        return BrokerAdmin.from_data_dir(self.data_dir, **kw)

    def gateway_credentials(self):
        """(user, password, CA file) the gateway logs in with (secure mode)."""
        from .broker_admin import GATEWAY, read_secret

        return GATEWAY, read_secret(self.gateway_password_path), str(self.ca.ca_cert)

    @property
    def gateway_config_path(self):
        return self.data_dir / "gateway.toml"

    def gateway_flags(self):
        """`siaga gateway` flags for this broker: with `GatewayProcess(..., extra=...)`
        the gateway logs in over TLS. They name gateway.toml (user, password file, CA):
        no password, nor its file, is ever a flag."""
        return ["--config", str(self.gateway_config_path)] if self.secure else []

    def _write_gateway_config(self):
        from .broker_admin import GATEWAY

        values = {
            "mqtt_user": GATEWAY,
            "mqtt_password_file": self.gateway_password_path,
            "mqtt_ca": self.ca.ca_cert,
        }
        lines = [f"{k} = {json.dumps(str(v))}" for k, v in values.items()]  # TOML basic strings
        self.gateway_config_path.write_text(
            "# The gateway's login on the secure broker: siaga gateway --config THIS_FILE\n"
            + "\n".join(lines)
            + "\n"
        )

    def _listeners(self):
        if not self.secure:
            return f"listener {self.port} {self.bind}\nallow_anonymous true"
        return "\n".join(
            (
                f"plugin {dynsec_plugin()}",
                f"plugin_opt_config_file {self.dynsec_path}",
                "allow_anonymous false",
                f"listener {self.port} {self.bind}",
                f"cafile {self.ca.ca_cert}",
                f"certfile {self.ca.server_cert}",
                f"keyfile {self.ca.server_key}",
                "tls_version tlsv1.2",
                "require_certificate false",
            )
        )

    @property
    def config_path(self):
        return self.data_dir / "mosquitto.conf"

    def write_config(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = TEMPLATE.read_text()
        for name, value in (
            ("LISTENERS", self._listeners()),
            ("PORT", self.port),
            ("BIND", self.bind),
            ("DATA", self.data_dir),
            ("USER", getpass.getuser()),
        ):
            text = text.replace(f"@{name}@", str(value))
        self.config_path.write_text(text)

    def start(self, timeout=10.0):
        bootstrap = self._prepare_secure() if self.secure else None
        self.write_config()
        self.proc = subprocess.Popen(
            [mosquitto_bin(), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        try:
            wait_for_port(self.port, self.bind, timeout, self.proc)
        except RuntimeError:
            raise RuntimeError("mosquitto failed: " + self.proc.stderr.read().decode()) from None
        if bootstrap:
            self._first_start(bootstrap)
        return self

    def _prepare_secure(self):
        """The CA and server certificate; at the very first start, a dynsec file with
        an admin whose throwaway password (on mosquitto_ctrl's command line) is replaced,
        over TLS, as soon as the broker runs. Returns that throwaway password, or None."""
        from .broker_admin import ADMIN, new_password, write_secret
        from .ca import ensure_ca

        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)  # passwords, dynsec hashes, the persisted sessions
        self.ca = ensure_ca(self.ca_dir, names=self.names)
        bootstrap_path = self.data_dir / "admin.bootstrap"
        if not self.dynsec_path.exists():
            write_secret(bootstrap_path, new_password())
            subprocess.run(
                [
                    "mosquitto_ctrl",
                    "dynsec",
                    "init",
                    str(self.dynsec_path),
                    ADMIN,
                    bootstrap_path.read_text().strip(),
                ],
                check=True,
                capture_output=True,
            )
            os.chmod(self.dynsec_path, 0o600)
        self._write_info()
        self._write_gateway_config()
        return bootstrap_path.read_text().strip() if bootstrap_path.exists() else None

    def _write_info(self):
        info = {"host": "127.0.0.1" if self.bind in ("0.0.0.0", "") else self.bind}
        info.update(tls_port=self.port, cafile=str(self.ca.ca_cert))
        (self.data_dir / "broker.json").write_text(json.dumps(info, indent=1) + "\n")

    def _first_start(self, bootstrap):
        """Real admin and gateway passwords, the default ACL that lets a client receive
        only what a role allows; then the throwaway password is gone. Each password is
        on disk before the broker has it, so an interrupted first start can go again."""
        from .broker_admin import ADMIN, AdminRefused, BrokerAdmin, new_password, read_secret, write_secret

        pending = self.data_dir / "admin.password.new"
        for path in (pending, self.gateway_password_path):
            if not path.exists():
                write_secret(path, new_password())
        info = json.loads((self.data_dir / "broker.json").read_text())
        try:
            admin = BrokerAdmin(info["host"], self.port, ADMIN, bootstrap, cafile=info["cafile"]).connect()
        except AdminRefused:  # the last attempt got as far as the new admin password
            admin = BrokerAdmin(
                info["host"], self.port, ADMIN, read_secret(pending), cafile=info["cafile"]
            ).connect()
        with admin:
            admin.command(
                {
                    "command": "setDefaultACLAccess",
                    "acls": [{"acltype": "publishClientReceive", "allow": False}],
                }
            )
            admin.set_gateway(read_secret(self.gateway_password_path))
            admin.set_admin_password(read_secret(pending))
        pending.replace(self.admin_password_path)
        (self.data_dir / "admin.bootstrap").unlink()

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()
