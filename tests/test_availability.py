"""The sans-I/O availability core: table cases for every rule, and a stateful property
test: the same events in any order, with any duplicates, give the same state."""

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway.availability import (
    DispatcherAction,
    Limits,
    LinkChanged,
    PositionFix,
    StatusPressed,
    UnitState,
    apply,
    deciding_fixes,
    from_json,
    status_in_force,
    to_json,
    view,
)
from gateway.statuses import AVAILABILITIES, StatusScheme

SCHEME = StatusScheme()
LIMITS = Limits()
T0 = 1795862700
HOME = (-2.2125, 113.9172)
_ids = iter(range(1, 10**9))


def fold(events, state=None):
    state = state or UnitState("amb-01")
    for ev in events:
        state = apply(state, ev, SCHEME)
    return state


def press(key, t, seq=None, boot=1, received=None):
    return StatusPressed(
        key, t, boot, next(_ids) if seq is None else seq, received if received is not None else t + 1
    )


def act(action, t, key=None, incident=None, reason=""):
    return DispatcherAction(action, t, next(_ids), t, key, reason, incident)


def fix(t, lat=-2.21, lon=113.92, speed=5.0, seq=None, boot=1):
    rec = {
        "boot": boot,
        "seq": next(_ids) if seq is None else seq,
        "t": t,
        "lat": lat,
        "lon": lon,
        "speed": speed,
        "heading": 90.0,
        "sats": 9,
        "hdop": 0.9,
        "sent": t,
    }
    return PositionFix(rec, t + 1)


def online(t=T0):
    return LinkChanged("birth", 1, 0, t)


def see(state, now):
    return view(state, now, LIMITS, SCHEME, HOME)


def avail(state, now):
    return see(state, now)["availability"]


INCIDENT = {"lat": -2.20, "lon": 113.93, "kind": "medical", "note": "Jl. Yos Sudarso"}


def test_status_keys_map_to_availability():
    expected = {
        1: "available",
        2: "available",
        3: "busy",
        4: "busy",
        6: "out_of_service",
        7: "busy",
        8: "busy",
        9: "available",
        0: "emergency",
    }
    for key, want in expected.items():
        assert avail(fold([online(), press(key, T0)]), T0 + 5) == want, key


def test_never_pressed_is_out_of_service():
    assert avail(fold([online()]), T0 + 1) == "out_of_service"


def test_request_to_talk_is_a_flag_not_a_status():
    state = fold([online(), press(3, T0), press(5, T0 + 10)])
    v = see(state, T0 + 11)
    assert v["availability"] == "busy" and v["status"]["key"] == 3 and "talk_request" in v["flags"]
    assert "talk_request" not in see(fold([press(4, T0 + 20)], state), T0 + 21)["flags"]


def test_emergency_stays_until_a_dispatcher_clears_it():
    state = fold([online(), press(3, T0), press(0, T0 + 10), press(2, T0 + 60)])
    v = see(state, T0 + 61)
    assert v["availability"] == "emergency" and v["emergency"]["since"] == T0 + 10
    assert v["status"]["key"] == 2  # the crew's status goes on beneath the emergency
    cleared = fold([act("clear_emergency", T0 + 70)], state)
    assert avail(cleared, T0 + 71) == "available" and see(cleared, T0 + 71)["emergency"] is None
    again = fold([press(0, T0 + 80)], cleared)
    assert avail(again, T0 + 81) == "emergency"


def test_silence_and_last_will_make_a_unit_offline():
    state = fold([online(), press(2, T0)])
    assert avail(state, T0 + 299) == "available"
    assert avail(state, T0 + 302) == "offline"
    lost = fold([LinkChanged("will", 1, 0, T0 + 10)], state)
    assert avail(lost, T0 + 11) == "offline" and see(lost, T0 + 11)["link"] == "lost"
    back = fold([LinkChanged("birth", 1, 5, T0 + 20)], lost)
    assert avail(back, T0 + 21) == "available"
    bye = fold([LinkChanged("bye", 1, 9, T0 + 30)], back)
    assert avail(bye, T0 + 31) == "offline" and see(bye, T0 + 31)["link"] == "shutdown"


def test_a_will_of_an_older_session_does_not_unseat_a_newer_birth():
    state = fold([LinkChanged("birth", 2, 0, T0), LinkChanged("will", 1, 0, T0 + 5)])
    assert state.link == "online"


def test_late_status_is_history_not_news():
    state = fold([press(4, T0 + 100), press(3, T0 + 50, received=T0 + 200)])
    assert status_in_force(state)[0][1] == 4


def test_backlog_position_does_not_move_the_live_marker():
    state = fold([fix(T0 + 100, lat=-2.30), fix(T0 + 10, lat=-2.10)])
    assert state.position["lat"] == -2.30
    v = see(state, T0 + 400)
    assert "position_stale" in v["flags"] and v["position"]["age"] == 300


def test_assignment_until_the_crew_acknowledges_then_over_when_back_in_service():
    state = fold([online(), press(2, T0), act("assign", T0 + 10, incident=INCIDENT)])
    v = see(state, T0 + 20)
    assert v["availability"] == "assigned" and v["assignment"]["acknowledged"] is False
    assert "assigned_no_ack" not in v["flags"]
    assert "assigned_no_ack" in see(state, T0 + 71)["flags"]
    state = fold([press(3, T0 + 40)], state)
    v = see(state, T0 + 80)
    assert v["availability"] == "busy" and v["assignment"]["acknowledged"] is True
    assert "assigned_no_ack" not in v["flags"]
    state = fold([press(4, T0 + 300), press(9, T0 + 900)], state)
    assert see(state, T0 + 901)["assignment"] is None and avail(state, T0 + 901) == "available"


def test_release_before_acknowledgement():
    state = fold([online(), press(2, T0), act("assign", T0 + 10, incident=INCIDENT), act("release", T0 + 20)])
    assert avail(state, T0 + 21) == "available" and see(state, T0 + 21)["assignment"] is None


def test_dispatcher_and_crew_the_newer_wins_and_the_loser_is_shown():
    state = fold([online(), press(2, T0), act("status", T0 + 10, key=6, reason="pump broken")])
    v = see(state, T0 + 11)
    assert v["availability"] == "out_of_service"
    assert v["status"]["source"] == "dispatcher" and v["status"]["reason"] == "pump broken"
    assert v["overridden"]["key"] == 2 and v["overridden"]["source"] == "crew"
    state = fold([press(1, T0 + 20)], state)
    v = see(state, T0 + 21)
    assert v["availability"] == "available" and v["overridden"]["source"] == "dispatcher"
    state = fold([press(3, T0 + 30)], state)
    assert see(state, T0 + 31)["overridden"] is None


def test_a_lock_keeps_the_dispatchers_status_and_shows_the_crews_press():
    state = fold(
        [online(), press(2, T0), act("lock", T0 + 5), act("status", T0 + 10, key=6), press(1, T0 + 20)]
    )
    v = see(state, T0 + 21)
    assert v["availability"] == "out_of_service" and "status_locked" in v["flags"]
    assert v["overridden"]["key"] == 1 and v["overridden"]["source"] == "crew"
    state = fold([act("unlock", T0 + 30), press(2, T0 + 40)], state)
    v = see(state, T0 + 41)
    assert v["availability"] == "available" and "status_locked" not in v["flags"]


def test_at_station_far_from_home_is_flagged():
    near = fold([online(), press(2, T0), fix(T0, lat=HOME[0] + 0.002, lon=HOME[1], speed=0.0)])
    assert "away_from_station" not in see(near, T0 + 1)["flags"]  # about 220 m
    far = fold([fix(T0 + 5, lat=HOME[0] + 0.01, lon=HOME[1], speed=0.0)], near)
    assert "away_from_station" in see(far, T0 + 6)["flags"]  # about 1.1 km
    assert "away_from_station" not in view(far, T0 + 6, LIMITS, SCHEME, None)["flags"]  # no home known


def test_en_route_without_moving_is_flagged():
    state = fold([online(), press(3, T0), fix(T0 + 100, speed=8.0), fix(T0 + 200, speed=0.0)])
    assert "en_route_not_moving" not in see(state, T0 + 399)["flags"]
    assert "en_route_not_moving" in see(state, T0 + 401)["flags"]


def test_the_state_survives_json():
    state = fold(
        [
            online(),
            press(2, T0),
            act("lock", T0 + 5),
            act("assign", T0 + 10, incident=INCIDENT),
            press(5, T0 + 11),
            press(0, T0 + 12),
            fix(T0 + 13),
        ]
    )
    assert from_json(json.loads(json.dumps(to_json(state)))) == state


@given(
    st.lists(
        st.tuples(st.integers(0, 900), st.sampled_from([None, 0.0, 0.5, 3.0]), st.floats(0, 900)),
        min_size=1,
        max_size=30,
    )
)
def test_the_deciding_fixes_fold_to_the_same_state_as_all(specs):
    fixes = []
    for dt, speed, received in specs:
        ev = fix(T0 + dt, speed=speed)
        fixes.append(PositionFix(ev.record, T0 + received))
    start = fold([online(), press(2, T0)])
    assert fold(deciding_fixes(fixes), start) == fold(fixes, start)


class Events(RuleBasedStateMachine):
    """Random event streams for one unit; after each step the state must equal the fold
    of the same events shuffled, with duplicates."""

    def __init__(self):
        super().__init__()
        self.events = []
        self.state = UnitState("amb-01")

    def _add(self, ev):
        self.events.append(ev)
        self.state = apply(self.state, ev, SCHEME)

    @rule(key=st.integers(0, 9), dt=st.integers(0, 900), boot=st.integers(1, 2))
    def crew_press(self, key, dt, boot):
        self._add(press(key, T0 + dt, boot=boot))

    @rule(dt=st.integers(0, 900), speed=st.sampled_from([0.0, 0.5, 3.0, 15.0]), lat=st.floats(-2.3, -2.1))
    def position(self, dt, speed, lat):
        self._add(fix(T0 + dt, lat=lat, speed=speed))

    @rule(kind=st.sampled_from(["birth", "will", "bye"]), boot=st.integers(1, 2), seq=st.integers(0, 20))
    def link(self, kind, boot, seq):
        self._add(LinkChanged(kind, boot, seq, T0 + seq))

    @rule(
        action=st.sampled_from(
            ["status", "lock", "unlock", "assign", "release", "clear_emergency", "ack_emergency"]
        ),
        dt=st.integers(0, 900),
        key=st.sampled_from([1, 2, 3, 4, 6, 7, 8, 9]),
    )
    def dispatcher(self, action, dt, key):
        self._add(
            act(
                action,
                T0 + dt,
                key=key if action == "status" else None,
                incident=INCIDENT if action == "assign" else None,
            )
        )

    @invariant()
    def order_does_not_matter(self):
        shuffled = self.events + self.events[: len(self.events) // 3]
        random.Random(len(self.events)).shuffle(shuffled)
        assert fold(shuffled) == self.state

    @invariant()
    def the_view_is_always_whole(self):
        for now in (T0, T0 + 1000, T0 + 5000):
            v = see(self.state, now)
            assert v["availability"] in AVAILABILITIES
            if v["assignment"] and not v["assignment"]["acknowledged"] and v["availability"] == "busy":
                raise AssertionError("an unacknowledged assignment must show")


Events.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestEvents = Events.TestCase


def test_rules_follow_the_codes_of_the_units_own_scheme():
    """An agency numbers its keys as it likes: "en route" on 7, "at station" on 4, the
    request to talk on 2; the rules follow the codes, not the default's numbers."""
    from gateway.statuses import Status

    own = StatusScheme(
        (
            Status(1, "available_road", "Siaga", "Available", "available"),
            Status(4, "available_station", "Di pos", "At station", "available"),
            Status(7, "en_route", "Berangkat", "En route", "busy"),
            Status(3, "on_scene", "Di lokasi", "On scene", "busy"),
            Status(2, "request_talk", "Bicara", "Talk", "unchanged"),
            Status(0, "emergency", "Darurat", "Emergency", "emergency", long_press=True),
        )
    )

    def fold_own(events):
        state = UnitState("sar-01")
        for ev in events:
            state = apply(state, ev, own)
        return state

    assigned = [online(), press(1, T0), act("assign", T0 + 5, incident=INCIDENT)]
    v = view(fold_own([*assigned, press(3, T0 + 10)]), T0 + 11, LIMITS, own, HOME)
    assert v["availability"] == "assigned"  # 3 is "on scene" here: not the acknowledgement
    v = view(fold_own([*assigned, press(7, T0 + 10)]), T0 + 11, LIMITS, own, HOME)
    assert v["availability"] == "busy" and v["assignment"]["acknowledged"]
    idle = view(fold_own([*assigned, press(7, T0 + 10)]), T0 + 10 + 400, LIMITS, own, HOME)
    assert "en_route_not_moving" in idle["flags"]
    talk = view(fold_own([online(), press(1, T0), press(2, T0 + 1)]), T0 + 2, LIMITS, own, HOME)
    assert talk["status"]["key"] == 1 and "talk_request" in talk["flags"]
    far = fold_own([online(), press(4, T0), fix(T0 + 5, lat=-2.2225)])
    assert "away_from_station" in view(far, T0 + 6, LIMITS, own, HOME)["flags"]
