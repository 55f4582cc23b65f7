"""Gateway settings: default < file < environment < flag, and clear errors."""

import argparse

import pytest

from gateway import config
from gateway.errors import ConfigError


def args(*argv):
    p = argparse.ArgumentParser()
    config.add_flags(p)
    return p.parse_args(argv)


def test_precedence(tmp_path):
    f = tmp_path / "gw.toml"
    f.write_text('http = 9000\noffline_after = 120\nmqtt = "10.0.0.5:1883"\n')
    assert config.resolve(args(), {})["http"] == 8080
    assert config.resolve(args("--config", str(f)), {})["http"] == 9000
    env = {"SIAGA_HTTP_PORT": "9100", "SIAGA_OFFLINE_AFTER": "90"}
    got = config.resolve(args("--config", str(f)), env)
    assert got["http"] == 9100 and got["offline_after"] == 90.0 and got["mqtt"] == "10.0.0.5:1883"
    assert config.resolve(args("--config", str(f), "--http", "9200"), env)["http"] == 9200


def test_the_password_is_never_a_flag():
    assert not [s for s in config.SETTINGS if "password" in s.name and s.flag]
    with pytest.raises(SystemExit):
        args("--mqtt-password", "x")


def test_bad_values_are_named(tmp_path):
    with pytest.raises(ConfigError, match="http from SIAGA_HTTP_PORT: 'eighty' is not a int"):
        config.resolve(args(), {"SIAGA_HTTP_PORT": "eighty"})
    f = tmp_path / "bad.toml"
    f.write_text("http = [")
    with pytest.raises(ConfigError, match="bad.toml"):
        config.resolve(args("--config", str(f)), {})
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        config.host_port("broker:x", 1883)
