"""The settings a gateway may push (gateway/unit_settings.py) are exactly those a unit
takes from a push (firmware/lib/config.py: its defaults less what provisioning alone
sets), of the same types, and each unit default lies in the gateway's range."""

import sys

from conftest import REPO

from gateway import unit_settings

sys.path.insert(0, str(REPO / "firmware" / "lib"))
import config  # noqa: E402  (the unit's own table)

PUSHABLE = {k: v for k, v in config.DEFAULTS.items() if k not in config.LOCAL_ONLY}


def test_the_gateway_pushes_exactly_what_a_unit_takes():
    assert set(unit_settings.SETTINGS) == set(PUSHABLE)


def test_types_agree_and_every_unit_default_is_in_range():
    for name, (kind, lo, hi) in unit_settings.SETTINGS.items():
        default = PUSHABLE[name]
        if kind == "keys":
            assert isinstance(default, list) and lo <= len(default) <= hi, name
            assert all(0 <= k <= 9 for k in default), name
            continue
        assert type(default) is kind, f"{name}: the unit's default is a {type(default).__name__}"
        assert lo <= default <= hi, f"{name}: the unit's default {default} is outside {lo}..{hi}"
        unit_settings.check({name: default})
        config.check({name: lo}, pushed=True)  # the unit takes the gateway's bounds
        config.check({name: hi}, pushed=True)
