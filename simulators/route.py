"""Plausible city driving for virtual units: a street grid, acceleration, braking for
corners, traffic lights. Deterministic for a given random seed.

Positions are true positions at 1 Hz; `simulators.nmea` turns them into receiver bytes.
"""

import math
import random
from dataclasses import dataclass

from .geo import to_latlon

BLOCK_M = 250.0  # street spacing of the grid
ACCEL = 1.8  # m/s²
BRAKE = 3.0  # m/s²
TURN_SPEED = 5.0  # m/s through a right-angle corner


@dataclass(frozen=True)
class Sample:
    t: float  # Unix seconds
    lat: float
    lon: float
    speed: float  # m/s
    heading: float  # degrees true
    x: float = 0.0
    y: float = 0.0


def snap(v):
    return round(v / BLOCK_M) * BLOCK_M


def grid_path(a, b, rng):
    """Corner points from a to b along the street grid (both snapped to streets)."""
    (ax, ay), (bx, by) = a, b
    pts = [(ax, ay), (snap(ax), snap(ay))]
    x, y = pts[-1]
    tx, ty = snap(bx), snap(by)
    while (x, y) != (tx, ty):  # alternate legs of a few blocks: a city route, not an L
        if x != tx and (y == ty or rng.random() < 0.5):
            step = min(abs(tx - x), BLOCK_M * rng.randint(1, 6))
            x += math.copysign(step, tx - x)
        else:
            step = min(abs(ty - y), BLOCK_M * rng.randint(1, 6))
            y += math.copysign(step, ty - y)
        pts.append((x, y))
    pts.append((bx, by))
    out = []
    for p in pts:
        if not out or p != out[-1]:
            out.append(p)
    return out


class Mover:
    """A vehicle that drives corner to corner along a path, one second at a time."""

    def __init__(self, x, y, t, rng=None, cruise=14.0):
        self.x, self.y, self.t = x, y, t
        self.rng = rng or random.Random()
        self.cruise = cruise
        self.speed = 0.0
        self.heading = 0.0
        self.path = []
        self.hold_until = 0.0

    @property
    def arrived(self):
        return not self.path

    def drive_to(self, x, y, cruise=None):
        self.cruise = cruise or self.cruise
        self.path = grid_path((self.x, self.y), (x, y), self.rng)[1:]

    def wait(self, seconds):
        self.hold_until = self.t + seconds

    def _corner_speed(self):
        if len(self.path) < 2:
            return 0.0  # the destination: stop there
        return TURN_SPEED

    def _target_speed(self, dist):
        # the fastest speed from which the vehicle can still brake for the next corner
        v_corner = self._corner_speed()
        return min(self.cruise, math.sqrt(v_corner**2 + 2 * BRAKE * dist))

    def _speed_toward(self, target, dt):
        """Accelerate or brake toward `target` m/s for `dt` s (never below a crawl): the
        metres driven."""
        if self.speed < target:
            self.speed = min(target, self.speed + ACCEL * dt)
        else:
            self.speed = max(target, self.speed - BRAKE * dt)
        self.speed = max(self.speed, 1.0)
        return self.speed * dt

    def _advance(self, dt):
        tx, ty = self.path[0]
        dist = math.hypot(tx - self.x, ty - self.y)
        move = self._speed_toward(self._target_speed(dist), dt)
        if dist > 0:
            self.heading = math.degrees(math.atan2(tx - self.x, ty - self.y)) % 360
        if move >= dist:
            self.x, self.y = tx, ty
            self.path.pop(0)
            if not self.path:
                self.speed = 0.0
            elif self.rng.random() < 0.2:  # a red light at this crossing
                self.hold_until = self.t + dt + self.rng.uniform(10, 45)
                self.speed = 0.0
        else:
            self.x += move * (tx - self.x) / dist
            self.y += move * (ty - self.y) / dist

    def step(self, dt=1.0):
        """Advance `dt` seconds; return the new true position."""
        if self.path and self.t >= self.hold_until:
            self._advance(dt)
        else:
            self.speed = 0.0
        self.t += dt
        lat, lon = to_latlon(self.x, self.y)
        return Sample(self.t, lat, lon, self.speed, self.heading, self.x, self.y)


def city_drive(seed=1, duration_s=1800, start_t=1795860000.0):
    """A reference drive: trips between random places with stops, at 1 Hz."""
    rng = random.Random(seed)
    mover = Mover(0.0, 0.0, start_t, rng)
    samples = []
    while len(samples) < duration_s:
        if mover.arrived:
            if samples and rng.random() < 0.5:
                mover.wait(rng.uniform(30, 180))  # at a scene or a hospital
            mover.drive_to(rng.uniform(-3000, 3000), rng.uniform(-3000, 3000), cruise=rng.uniform(11, 17))
        samples.append(mover.step())
    return samples
