"""The sans-I/O availability core: table cases, and order independence (any order, any
duplicates, same final state)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.availability import Limits, LinkChanged, PositionFix, StatusPressed, UnitState, apply, view
from gateway.statuses import StatusScheme

SCHEME = StatusScheme()
LIMITS = Limits(offline_after=300, position_stale_after=180)
T0 = 1795862700


def fold(events, state=None):
    state = state or UnitState("amb-01")
    for ev in events:
        state = apply(state, ev, SCHEME)
    return state


def press(key, t, seq, boot=1, received=None):
    return StatusPressed(key, t, boot, seq, received if received is not None else t + 1)


def fix(t, seq, lat=-2.21, boot=1):
    rec = {
        "boot": boot,
        "seq": seq,
        "t": t,
        "lat": lat,
        "lon": 113.92,
        "speed": 5.0,
        "heading": 90.0,
        "sats": 9,
        "hdop": 0.9,
        "sent": t,
    }
    return PositionFix(rec, t + 1)


def avail(state, now):
    return view(state, now, LIMITS, SCHEME)["availability"]


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
        state = fold([LinkChanged("birth", 1, 0, T0), press(key, T0, 1)])
        assert avail(state, T0 + 5) == want, key


def test_never_pressed_is_out_of_service():
    state = fold([LinkChanged("birth", 1, 0, T0)])
    assert avail(state, T0 + 1) == "out_of_service"


def test_request_to_talk_is_a_flag_not_a_status():
    state = fold([LinkChanged("birth", 1, 0, T0), press(3, T0, 1), press(5, T0 + 10, 2)])
    v = view(state, T0 + 11, LIMITS, SCHEME)
    assert v["availability"] == "busy" and v["status"]["key"] == 3 and "talk_request" in v["flags"]
    state = fold([press(4, T0 + 20, 3)], state)
    assert "talk_request" not in view(state, T0 + 21, LIMITS, SCHEME)["flags"]


def test_emergency_stays_until_a_dispatcher_clears_it():
    state = fold([LinkChanged("birth", 1, 0, T0), press(0, T0, 1), press(2, T0 + 60, 2)])
    assert avail(state, T0 + 61) == "emergency"


def test_silence_and_last_will_make_a_unit_offline():
    state = fold([LinkChanged("birth", 1, 0, T0), press(2, T0, 1)])
    assert avail(state, T0 + 299) == "available"
    assert avail(state, T0 + 302) == "offline"
    lost = fold([LinkChanged("will", 1, 0, T0 + 10)], state)
    assert avail(lost, T0 + 11) == "offline"
    assert view(lost, T0 + 11, LIMITS, SCHEME)["link"] == "lost"
    back = fold([LinkChanged("birth", 1, 5, T0 + 20)], lost)
    assert avail(back, T0 + 21) == "available"


def test_a_will_of_an_older_session_does_not_unseat_a_newer_birth():
    state = fold([LinkChanged("birth", 2, 0, T0), LinkChanged("will", 1, 0, T0 + 5)])
    assert state.link == "online"


def test_late_status_is_history_not_news():
    state = fold([press(4, T0 + 100, 9), press(3, T0 + 50, 4, received=T0 + 200)])
    assert state.status_key == 4


def test_backlog_position_does_not_move_the_live_marker():
    state = fold([fix(T0 + 100, 10, lat=-2.30), fix(T0 + 10, 2, lat=-2.10)])
    assert state.position["lat"] == -2.30
    v = view(state, T0 + 400, LIMITS, SCHEME)
    assert "position_stale" in v["flags"] and v["position"]["age"] == 300


# An event without its seq; the test numbers them, since (boot, seq) names one message.
EVENT = st.one_of(
    st.tuples(st.just("press"), st.sampled_from(range(10)), st.integers(T0, T0 + 600), st.integers(1, 3)),
    st.tuples(st.just("fix"), st.floats(-2.3, -2.1), st.integers(T0, T0 + 600), st.integers(1, 3)),
    st.tuples(
        st.just("link"),
        st.sampled_from(["birth", "will", "bye"]),
        st.integers(T0, T0 + 600),
        st.integers(1, 3),
    ),
)


def build(spec, seq):
    kind, arg, t, boot = spec
    if kind == "press":
        return press(arg, t, seq, boot)
    if kind == "fix":
        return fix(t, seq, arg, boot)
    return LinkChanged(arg, boot, seq, float(t))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(EVENT, max_size=25), st.randoms(use_true_random=False), st.lists(st.integers(0, 24), max_size=10)
)
def test_same_events_in_any_order_with_duplicates_give_the_same_state(specs, rnd, dup_idx):
    events = [build(spec, seq) for seq, spec in enumerate(specs)]
    shuffled = events + [events[i] for i in dup_idx if i < len(events)]
    rnd.shuffle(shuffled)
    assert fold(events) == fold(shuffled)
