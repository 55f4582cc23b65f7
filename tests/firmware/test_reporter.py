# The adaptive reporting policy, fed fix by fix (1 Hz, fix times in seconds).
from reporter import ReportPolicy

T0 = 1795862700.0
M_PER_DEG = 111320.0


def drive(policy, legs, t=T0, lat=-2.21, lon=113.92):
    """legs: (seconds, speed m/s, heading deg); returns [(t, reason)] of reports."""
    out = []
    for seconds, speed, heading in legs:
        for _ in range(seconds):
            t += 1
            if heading == 0:
                lat += speed / M_PER_DEG
            elif heading == 90:
                lon += speed / M_PER_DEG
            reason = policy.update(t, lat, lon, speed, heading if speed else None)
            if reason:
                out.append((t - T0, reason))
    return out


def test_first_fix_is_reported():
    assert drive(ReportPolicy(), [(1, 0.0, 0)]) == [(1, "first")]


def test_straight_road_reports_on_the_max_period():
    p = ReportPolicy()
    reasons = [r for _, r in drive(p, [(200, 14.0, 0)])]
    assert reasons[:2] == ["first", "start"]
    assert set(reasons[2:]) == {"period"} and 5 <= len(reasons[2:]) <= 7


def test_a_turn_is_reported_at_once():
    p = ReportPolicy()
    out = drive(p, [(20, 10.0, 0), (5, 10.0, 90)])
    assert (21, "angle") in out


def test_a_red_light_does_not_flap_start_and_stop():
    p = ReportPolicy()
    out = drive(p, [(20, 12.0, 0), (45, 0.0, 0), (20, 12.0, 0)])
    reasons = [r for _, r in out]
    assert "stop" not in reasons and reasons.count("start") == 1


def test_parked_reports_stop_once_then_heartbeats():
    p = ReportPolicy()
    out = drive(p, [(20, 12.0, 0), (600, 0.0, 0)])
    reasons = [r for _, r in out]
    assert reasons.count("stop") == 1
    beats = [t for t, r in out if r == "heartbeat"]
    assert len(beats) == 4 and all(b - a == 120 for a, b in zip(beats, beats[1:]))


def test_low_speed_heading_noise_is_no_turn():
    p = ReportPolicy()
    out = drive(p, [(10, 12.0, 0), (10, 1.0, 90), (10, 1.0, 0)])
    assert "angle" not in [r for _, r in out]


def test_a_status_change_forces_the_next_fix_out():
    p = ReportPolicy()
    drive(p, [(10, 12.0, 0)])
    p.force("status")
    assert drive(p, [(1, 12.0, 0)], t=T0 + 10) == [(11, "status")]


def test_thresholds_come_from_config():
    p = ReportPolicy({"report_max_period_s": 10, "report_stop_s": 5})
    assert p.max_period == 10 and p.stop_s == 5 and p.heartbeat == 120
