"""Gateway settings, in one table. Precedence: default < file < environment < flag.
Secrets (the MQTT password) come from the file or the environment, never a flag.
"""

import os
import tomllib
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    env: str
    flag: str | None
    help: str
    kind: type = str


SETTINGS = (
    Setting(
        "mqtt",
        "127.0.0.1:1883",
        "SIAGA_MQTT",
        "--mqtt",
        "broker address HOST:PORT; a cluster's nodes comma-separated, tried in turn",
    ),
    Setting(
        "mqtt_client_id",
        "siaga-gateway",
        "SIAGA_MQTT_CLIENT_ID",
        "--mqtt-client-id",
        "MQTT client id; the broker keeps this session's messages while the gateway is away",
    ),
    Setting("mqtt_user", "", "SIAGA_MQTT_USER", "--mqtt-user", "MQTT user name of the gateway"),
    Setting("mqtt_password", "", "SIAGA_MQTT_PASSWORD", None, "MQTT password (file or environment only)"),
    Setting(
        "mqtt_password_file",
        "",
        "SIAGA_MQTT_PASSWORD_FILE",
        None,
        "file holding the MQTT password (the broker's gateway.password); overrides mqtt_password",
    ),
    Setting(
        "mqtt_ca",
        "",
        "SIAGA_MQTT_CA",
        "--mqtt-ca",
        "CA certificate (PEM) of the broker: set, the gateway talks TLS and verifies the broker",
    ),
    Setting("http_host", "127.0.0.1", "SIAGA_HTTP_HOST", "--http-host", "address the HTTP API listens on"),
    Setting("http", 8080, "SIAGA_HTTP_PORT", "--http", "HTTP port of the API and map", int),
    Setting("data", "var", "SIAGA_DATA_DIR", "--data", "folder for the database"),
    Setting(
        "database_url",
        "",
        "SIAGA_DATABASE_URL",
        "--database-url",
        "PostgreSQL connection string (libpq: several hosts and target_session_attrs=read-write for"
        " failover) shared by every gateway of the centre; unset: SQLite in the data folder",
    ),
    Setting(
        "gateways",
        "",
        "SIAGA_GATEWAYS",
        "--gateways",
        "addresses of every gateway of this centre, comma-separated (http://host:port,...): the"
        " page moves to the next when its own stops answering",
    ),
    Setting(
        "instance",
        "",
        "SIAGA_INSTANCE",
        "--instance",
        "this gateway's name among several on one database (default: host name and HTTP port)",
    ),
    Setting(
        "offline_after",
        300.0,
        "SIAGA_OFFLINE_AFTER",
        "--offline-after",
        "seconds without any message before a unit is offline",
        float,
    ),
    Setting(
        "position_stale_after",
        180.0,
        "SIAGA_POSITION_STALE_AFTER",
        "--position-stale-after",
        "seconds after its fix time before a position is marked stale",
        float,
    ),
    Setting(
        "retention_days",
        90.0,
        "SIAGA_RETENTION_DAYS",
        "--retention-days",
        "days positions and quarantined messages are kept (statuses and actions are kept)",
        float,
    ),
    Setting(
        "session_lifetime",
        43200.0,
        "SIAGA_SESSION_LIFETIME",
        "--session-lifetime",
        "seconds a login lasts after its last request (12 h: a dispatch shift)",
        float,
    ),
    Setting(
        "max_clock_ahead",
        180.0,
        "SIAGA_MAX_CLOCK_AHEAD",
        "--max-clock-ahead",
        "seconds a unit's fix or press may be ahead of the gateway's clock; beyond: quarantined"
        " (future_time)",
        float,
    ),
    Setting(
        "max_boot_step",
        1000,
        "SIAGA_MAX_BOOT_STEP",
        "--max-boot-step",
        "boots a unit may make unseen; a message further ahead is quarantined (boot_jump)",
        int,
    ),
    Setting(
        "max_seq_step",
        1_000_000,
        "SIAGA_MAX_SEQ_STEP",
        "--max-seq-step",
        "messages a unit may make unseen in one boot; further ahead: quarantined (seq_jump)",
        int,
    ),
    Setting(
        "ingest_stall_after",
        15.0,
        "SIAGA_INGEST_STALL_AFTER",
        "--ingest-stall-after",
        "seconds without a commit while messages wait (or without the broker) before /health"
        " says degraded (503)",
        float,
    ),
    Setting(
        "status_scheme",
        "",
        "SIAGA_STATUS_SCHEME",
        "--status-scheme",
        "JSON file with the agency's status scheme (default: the built-in FMS scheme)",
    ),
    Setting(
        "status_schemes",
        "",
        "SIAGA_STATUS_SCHEMES",
        "--status-schemes",
        "folder of further schemes, NAME.json each, that a unit's registry entry can name",
    ),
    Setting(
        "tiles_url",
        "",
        "SIAGA_TILES_URL",
        "--tiles-url",
        "an online XYZ tile source for the dispatcher's map, besides the offline basemap"
        " (siaga map import) or instead of it; none by default",
    ),
    Setting(
        "tiles_attribution",
        "&copy; OpenStreetMap contributors",
        "SIAGA_TILES_ATTRIBUTION",
        "--tiles-attribution",
        "attribution the online tile source requires, shown on the map while it is",
    ),
)


def add_flags(parser):
    parser.add_argument("--config", help="TOML file with gateway settings (keys as in docs/configuration.md)")
    for s in SETTINGS:
        if s.flag:
            parser.add_argument(s.flag, dest=s.name, default=None, help=f"{s.help} [env {s.env}]")


# The range of each number setting: anything else is refused at start, with its source.
BOUNDS = {
    "http": (1, 65535),
    "offline_after": (1, 86400),
    "position_stale_after": (1, 86400),
    "retention_days": (0.001, 3650),
    "session_lifetime": (1, 7 * 86400),
    "max_clock_ahead": (1, 86400),
    "max_boot_step": (1, 65535),
    "max_seq_step": (1, 0xFFFFFFFF),
    "ingest_stall_after": (1, 3600),
}


def _convert(setting, value, source):
    try:
        if isinstance(value, bool) and setting.kind is not bool:
            raise TypeError
        out = setting.kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{setting.name} from {source}: {value!r} is not a {setting.kind.__name__}"
        ) from None
    lo, hi = BOUNDS.get(setting.name, (None, None))
    if lo is not None and not lo <= out <= hi:  # also refuses NaN
        raise ConfigError(f"{setting.name} from {source}: {value!r} is outside {lo}..{hi}")
    if setting.kind is str and len(out) > 4096:
        raise ConfigError(f"{setting.name} from {source}: longer than 4096 characters")
    return out


def resolve(args=None, environ=None):
    """Settings as a dict, each from the strongest source that sets it."""
    environ = os.environ if environ is None else environ
    file_values = {}
    path = getattr(args, "config", None)
    if path:
        try:
            with open(path, "rb") as f:
                file_values = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"config file {path}: {e}") from None
    out = {}
    for s in SETTINGS:
        value, source = s.default, "default"
        if s.name in file_values:
            value, source = file_values[s.name], path
        if s.env in environ:
            value, source = environ[s.env], s.env
        flag_value = getattr(args, s.name, None)
        if flag_value is not None:
            value, source = flag_value, s.flag
        out[s.name] = _convert(s, value, source)
    if out["mqtt_password_file"]:
        out["mqtt_password"] = _read_secret(out["mqtt_password_file"])
    return out


def _read_secret(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError(f"mqtt_password_file {path}: {e.strerror}") from None


def host_ports(value, default_port):
    """[(host, port), ...] of a comma-separated list of HOST:PORT."""
    out = [host_port(part.strip(), default_port) for part in value.split(",") if part.strip()]
    if not out:
        raise ConfigError(f"{value!r} names no HOST:PORT")
    return out


def host_port(value, default_port):
    host, _, port = value.rpartition(":")
    if not host:
        return value, default_port
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"{value!r} is not HOST:PORT") from None


def value(name, flag=None, environ=None):
    """One setting for a command that takes no config file: its flag, else its
    environment variable, else its default (the precedence of `resolve`)."""
    environ = os.environ if environ is None else environ
    setting = next(s for s in SETTINGS if s.name == name)
    if flag is not None:
        return _convert(setting, flag, setting.flag)
    if setting.env in environ:
        return _convert(setting, environ[setting.env], setting.env)
    return setting.default


def data_dir(flag=None):
    """The gateway's data folder: --data, $SIAGA_DATA_DIR, or `var`."""
    from pathlib import Path

    return Path(value("data", flag))
