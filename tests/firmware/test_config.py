# The unit never boots into a dead state: a bad layer is reported and not used.
import json

import config


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _load():
    logged = []
    return config.load(log=logged.append), logged


def test_defaults_without_a_file():
    cfg, logged = _load()
    assert cfg["report_max_period_s"] == 30 and cfg["debounce_ms"] == 50 and cfg["_version"] == 0
    assert "no config.json" in logged[0]


def test_file_overrides_defaults():
    _write("config.json", '{"unit_id": "amb-01", "broker_port": 18883}')
    cfg, logged = _load()
    assert cfg["unit_id"] == "amb-01" and cfg["broker_port"] == 18883
    assert cfg["long_press_ms"] == 2000 and logged == []


def test_broken_json_is_reported_and_ignored():
    _write("config.json", '{"unit_id": "amb-01", ')
    cfg, logged = _load()
    assert cfg["unit_id"] == "unprovisioned"
    assert "invalid" in logged[0] and "defaults" in logged[1]


def test_a_broken_file_falls_back_to_the_last_good_one():
    _write("config.json", '{"unit_id": "amb-01", "broker_host": "10.1.2.3"}')
    assert _load()[0]["unit_id"] == "amb-01"
    _write("config.json", '{"unit_id": "amb-01", "broker_host": ')  # torn by a power cut
    cfg, logged = _load()
    assert cfg["unit_id"] == "amb-01" and cfg["broker_host"] == "10.1.2.3"
    assert "invalid" in logged[0] and "last good copy" in logged[1]
    _write("config.json", '{"unit_id": "amb-02"}')  # a good new file becomes the good copy
    assert _load()[0]["unit_id"] == "amb-02"
    with open("config.good.json") as f:
        assert json.load(f) == {"unit_id": "amb-02"}


def test_wrong_type_or_unknown_key_is_refused():
    for text in ('{"broker_port": "1883"}', '{"brokr_port": 1883}', "[1, 2]"):
        _write("config.json", text)
        cfg, logged = _load()
        assert cfg["broker_port"] == 1883 and "invalid" in logged[0], text


def test_broker_host_takes_a_cluster_s_nodes_and_refuses_a_malformed_list():
    for good in ("n1.example:8883,n2.example:8884", "n1, n2:1883", "10.0.0.1", "n1:1,n2:65535"):
        config.check({"broker_host": good})
    for bad in ("n1:", "n1,,n2", "n1,", "n1:88a3", "n1:0", "n1:65536", ":8883", "", "n1:-1"):
        try:
            config.check({"broker_host": bad})
        except ValueError as e:
            assert "broker_host must be host or host:port" in str(e), bad
        else:
            raise AssertionError("taken: " + bad)
    _write("config.json", '{"unit_id": "amb-01", "broker_host": "n1:8883,n2:8883"}')
    assert _load()[0]["broker_host"] == "n1:8883,n2:8883"
    _write("config.json", '{"unit_id": "amb-01", "broker_host": "n1:8883,n2:88 83"}')
    cfg, logged = _load()  # refused: the last good copy, with its nodes
    assert cfg["broker_host"] == "n1:8883,n2:8883" and "n2:88 83" in logged[0], logged


def test_a_float_setting_takes_an_integer():
    _write("config.json", '{"gnss_max_hdop": 3}')
    assert _load()[0]["gnss_max_hdop"] == 3


def test_pushed_settings_persist_over_the_file_with_their_version():
    _write("config.json", '{"unit_id": "amb-01", "report_max_period_s": 20}')
    cfg, _ = _load()
    config.apply_pushed(cfg, {"report_max_period_s": 15}, 4)
    assert cfg["report_max_period_s"] == 15 and cfg["_version"] == 4
    config.apply_pushed(cfg, {"report_max_period_s": 15, "report_heartbeat_s": 90}, 5)  # the whole set
    cfg, logged = _load()  # after a reboot
    assert cfg["report_max_period_s"] == 15 and cfg["report_heartbeat_s"] == 90
    assert cfg["_version"] == 5 and cfg["unit_id"] == "amb-01" and logged == []
    with open("settings.json") as f:
        assert json.load(f) == {"version": 5, "values": {"report_max_period_s": 15, "report_heartbeat_s": 90}}


def test_a_push_may_not_touch_identity_broker_or_credentials():
    cfg, _ = _load()
    for values in ({"broker_host": "evil.example"}, {"unit_id": "x"}, {"mqtt_password": "p"}):
        try:
            config.apply_pushed(cfg, values, 9)
            raise AssertionError("accepted %r" % values)
        except ValueError as e:
            assert "provisioning only" in str(e)
    assert cfg["broker_host"] == "127.0.0.1" and cfg["_version"] == 0


def test_a_refused_push_changes_nothing():
    cfg, _ = _load()
    config.apply_pushed(cfg, {"report_heartbeat_s": 90}, 2)
    for values in ({"report_heartbeat_s": "fast"}, {"no_such_key": 1}):
        try:
            config.apply_pushed(cfg, values, 3)
            raise AssertionError("accepted")
        except ValueError:
            pass
    cfg, _ = _load()
    assert cfg["report_heartbeat_s"] == 90 and cfg["_version"] == 2


def test_a_torn_settings_file_falls_back_to_the_lower_layers():
    _write("config.json", '{"unit_id": "amb-01"}')
    _write("settings.json", '{"version": 3, "values": {"report_heartbeat_s": 9')
    cfg, logged = _load()
    assert cfg["unit_id"] == "amb-01" and cfg["report_heartbeat_s"] == 120 and cfg["_version"] == 0
    assert "settings.json is invalid" in logged[0]


def test_a_setting_the_gateway_took_back_returns_to_the_units_own():
    _write("config.json", '{"unit_id": "amb-01", "report_max_period_s": 20}')
    cfg, _ = _load()
    config.apply_pushed(cfg, {"report_max_period_s": 15, "report_heartbeat_s": 90}, 4)
    config.apply_pushed(cfg, {"report_heartbeat_s": 90}, 5)  # report_max_period_s taken back
    assert cfg["report_max_period_s"] == 20 and cfg["report_heartbeat_s"] == 90  # config.json's
    config.apply_pushed(cfg, {}, 6)  # every pushed setting taken back
    assert cfg["report_heartbeat_s"] == 120 and cfg["_version"] == 6  # the default
    cfg, _ = _load()  # after a reboot
    assert cfg["report_max_period_s"] == 20 and cfg["report_heartbeat_s"] == 120


def test_a_push_reads_the_whole_configuration_again_and_refreshes_the_units_keys():
    # the unit keeps only the keys it reads after start (startup.py): a value config.json
    # sets and the push does not name stays in force
    import fixfilter
    import reporter

    class Parts:
        pass

    _write("config.json", '{"unit_id": "amb-01", "report_max_period_s": 60, "telemetry_s": 100}')
    full, _ = _load()
    u = Parts()
    u.cfg = {"_version": 0, "telemetry_s": full["telemetry_s"]}
    u.policy, u.fixes = reporter.ReportPolicy(full), fixfilter.FixFilter(full)
    u.keypad, u.feedback = Parts(), Parts()
    logged = []
    u.log = logged.append
    config.put_in_force(u, {"report_heartbeat_s": 90, "telemetry_s": 600}, 1)
    assert u.policy.max_period == 60 and u.policy.heartbeat == 90  # config.json's; the push's
    assert u.cfg == {"_version": 1, "telemetry_s": 600}  # refreshed, and no more keys than before
    assert u.keypad.long_press_ms == 2000 and u.feedback.alarm_ms == 60000
    assert "settings 1 in force" in logged[-1]
    config.put_in_force(u, {"report_heartbeat_s": "fast"}, 2)
    assert "settings 2 refused" in logged[-1] and u.cfg["_version"] == 1
