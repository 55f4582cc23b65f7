# The unit never boots into a dead state: a bad config file falls back to defaults.
import config


def _write(text):
    with open("config.json", "w") as f:
        f.write(text)


def test_defaults_without_a_file():
    logged = []
    cfg = config.load("missing.json", log=logged.append)
    assert cfg["report_max_period_s"] == 30 and cfg["debounce_ms"] == 50
    assert "no missing.json" in logged[0]


def test_file_overrides_defaults():
    _write('{"unit_id": "amb-01", "broker_port": 18883}')
    cfg = config.load("config.json", log=lambda m: None)
    assert cfg["unit_id"] == "amb-01" and cfg["broker_port"] == 18883
    assert cfg["long_press_ms"] == 2000


def test_broken_json_is_reported_and_ignored():
    _write('{"unit_id": "amb-01", ')
    logged = []
    cfg = config.load("config.json", log=logged.append)
    assert cfg["unit_id"] == "unprovisioned"
    assert "invalid" in logged[0]


def test_wrong_type_or_unknown_key_is_refused():
    for text in ('{"broker_port": "1883"}', '{"brokr_port": 1883}', "[1, 2]"):
        _write(text)
        logged = []
        cfg = config.load("config.json", log=logged.append)
        assert cfg["broker_port"] == 1883 and "invalid" in logged[0], text
