# When a moving unit reports its position: adaptive, like commercial trackers (time,
# distance, angle and speed-change acquisition), so that a dispatcher's map follows the
# vehicle closely with a fraction of fixed-period reports. Stopped, a slow heartbeat.
# Start/stop detection has hysteresis, so a unit at a traffic light does not flap.
# Times are fix times (GNSS seconds), so the policy is the same at any replay speed.
from fixfilter import distance_m

# config key, attribute, default; defaults chosen for emergency vehicles in a city (one flat tuple: no
# dict or tuple per entry in the unit's heap)
# fmt: off
TUNABLES = (
    "report_max_period_s", "max_period", 30,  # moving: a report at least this often, s
    "report_min_period_s", "min_period", 1,  # moving: never more often than this, s
    "report_distance_m", "distance", 500,  # moving: a report after this distance, m
    "report_angle_deg", "angle", 25,  # moving: a report when the heading turned this much
    "report_angle_min_speed", "angle_min_speed", 2.0,  # heading counts above this, m/s
    "report_speed_delta", "speed_delta", 12.0,  # moving: speed changed this much, m/s
    "report_heartbeat_s", "heartbeat", 120,  # stopped: a report this often, s
    "report_start_speed", "start_speed", 2.5,  # moving when faster than this ..., m/s
    "report_start_s", "start_s", 3,  # ... for this long, s
    "report_stop_speed", "stop_speed", 1.0,  # stopped when slower than this ..., m/s
    "report_stop_s", "stop_s", 60,  # ... for this long, s (longer than a red light)
)
# fmt: on


class ReportPolicy:
    def __init__(self, cfg=None):
        self.configure(cfg)
        self.moving = False
        self.forced = None
        self.last_t = None
        self.last_lat = self.last_lon = 0.0
        self.last_speed = 0.0
        self.last_heading = None
        self._since = None  # when the speed crossed the start or stop threshold

    def configure(self, cfg):
        for i in range(0, len(TUNABLES), 3):
            key, attr, default = TUNABLES[i : i + 3]
            setattr(self, attr, cfg.get(key, default) if cfg else default)

    def force(self, reason="status"):
        """The next fix is reported, whatever the thresholds (a status change)."""
        self.forced = reason

    def _motion(self, t, speed):
        """Update moving/stopped with hysteresis; returns 'start', 'stop' or None."""
        crossing = speed < self.stop_speed if self.moving else speed > self.start_speed
        if not crossing:
            self._since = None
            return None
        if self._since is None:
            self._since = t
        if t - self._since >= (self.stop_s if self.moving else self.start_s):
            self.moving = not self.moving
            self._since = None
            return "start" if self.moving else "stop"
        return None

    def _turned(self, speed, heading):
        if heading is None or self.last_heading is None or speed < self.angle_min_speed:
            return False
        d = abs(heading - self.last_heading) % 360
        return min(d, 360 - d) >= self.angle

    def _moving_reason(self, t, lat, lon, speed, heading):
        if t - self.last_t < self.min_period:
            return None
        if t - self.last_t >= self.max_period:
            return "period"
        if self._turned(speed, heading):
            return "angle"
        if abs(speed - self.last_speed) >= self.speed_delta:
            return "speed"
        if distance_m(self.last_lat, self.last_lon, lat, lon) >= self.distance:
            return "distance"
        return None

    def update(self, t, lat, lon, speed, heading):
        """A trusted fix: returns why it must be reported now, or None."""
        speed = speed or 0.0
        change = self._motion(t, speed)
        if self.forced:
            reason, self.forced = self.forced, None
        elif self.last_t is None:
            reason = "first"
        elif change:
            reason = change
        elif self.moving:
            reason = self._moving_reason(t, lat, lon, speed, heading)
        else:
            reason = "heartbeat" if t - self.last_t >= self.heartbeat else None
        if reason:
            self.last_t, self.last_lat, self.last_lon = t, lat, lon
            self.last_speed = speed
            if heading is not None and speed >= self.angle_min_speed:
                self.last_heading = heading
        return reason
