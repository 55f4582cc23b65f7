"""A demo fleet of Palangka Raya: virtual units with crews that run missions.

Places are plausible spots in the city (metres east/north of the centre), not surveyed.
"""

import logging
import random
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.client import Client

from .geo import to_latlon
from .vunit import VirtualUnit

log = logging.getLogger("siaga.fleet")


@dataclass(frozen=True)
class Place:
    name: str
    x: float
    y: float


HOSPITAL = Place("RSUD dr. Doris Sylvanus", 250, -250)
STATIONS = {
    "ambulance": [
        HOSPITAL,
        Place("PSC 112 Dinas Kesehatan", -700, -500),
        Place("Puskesmas Panarung", 1750, 1000),
    ],
    "fire_truck": [
        Place("Mako Damkar Kota", 500, 500),
        Place("Pos Damkar Tjilik Riwut", -1500, 1250),
        Place("Pos Damkar Yos Sudarso", 750, -1500),
    ],
}
PREFIX = {"ambulance": ("amb", "AMBULANS"), "fire_truck": ("dmk", "DAMKAR")}


@dataclass(frozen=True)
class UnitSpec:
    unit_id: str
    kind: str
    callsign: str
    home: Place

    def registration(self):
        lat, lon = to_latlon(self.home.x, self.home.y)
        return {
            "unit_id": self.unit_id,
            "kind": self.kind,
            "callsign": self.callsign,
            "agency": "112 Palangka Raya",
            "home_name": self.home.name,
            "home_lat": lat,
            "home_lon": lon,
        }


def demo_specs(count=6):
    """`count` units, alternating ambulances and fire trucks, three of each for 6."""
    specs = []
    for i in range(count):
        kind = ("ambulance", "fire_truck")[i % 2]
        n = i // 2 + 1
        prefix, name = PREFIX[kind]
        homes = STATIONS[kind]
        specs.append(UnitSpec(f"{prefix}-{n:02d}", kind, f"{name} {n:02d}", homes[(n - 1) % len(homes)]))
    return specs


def mission_scene(home, rng, radius_m=2500):
    """A mission's scene: a random place around the unit's home (on a road map, the
    mover drives to the road nearest to it)."""
    return home.x + rng.uniform(-radius_m, radius_m), home.y + rng.uniform(-radius_m, radius_m)


class Crew(threading.Thread):
    """Presses the keys a real crew would, through the unit's panel, on missions."""

    def __init__(self, unit, spec, rng, stop, pace=1.0):
        super().__init__(daemon=True, name=f"crew-{spec.unit_id}")
        self.unit, self.spec, self.rng, self.stop_event, self.pace = unit, spec, rng, stop, pace

    def _wait(self, lo, hi):
        return self.stop_event.wait(self.rng.uniform(lo, hi) * self.pace)

    def _drive(self, place_or_xy):
        x, y = (place_or_xy.x, place_or_xy.y) if isinstance(place_or_xy, Place) else place_or_xy
        self.unit.mover.drive_to(x, y, cruise=self.rng.uniform(12, 17))
        while not self.unit.mover.arrived:
            if self.stop_event.wait(1):
                return True
        return False

    def _press(self, key):
        if not self.stop_event.is_set():
            self.unit.press(key)

    def run(self):
        if self._wait(4, 8):
            return
        self._press(2)
        while not self._wait(30, 180):
            if self._mission():
                return

    def _mission(self):
        home = self.spec.home
        scene = mission_scene(home, self.rng)
        self._press(3)
        if self._drive(scene):
            return True
        self._press(4)
        if self._wait(40, 150):
            return True
        if self.spec.kind == "ambulance" and self.rng.random() < 0.7:
            self._press(7)
            if self._drive(HOSPITAL):
                return True
            self._press(8)
            if self._wait(30, 90):
                return True
        self._press(9)
        if self._drive(home):
            return True
        self._press(2)
        return False


class Patrol(threading.Thread):
    """Drives a unit between random places of the city, with stops, until it stops."""

    def __init__(self, unit, rng, radius_m=3000):
        super().__init__(daemon=True, name=f"patrol-{unit.unit_id}")
        self.unit, self.rng, self.radius = unit, rng, radius_m

    def run(self):
        mover = self.unit.mover
        while not self.unit.stopped.wait(1):
            if mover.arrived:
                mover.wait(self.rng.uniform(10, 60))
                mover.drive_to(
                    self.rng.uniform(-self.radius, self.radius),
                    self.rng.uniform(-self.radius, self.radius),
                    cruise=self.rng.uniform(10, 16),
                )


def register(api, spec):
    return Client(api).post("/api/v1/units", spec.registration())


def supply_volts(rng):
    """A vehicle's supply: most engines running (13.6-14.4 V), some parked (12.3-12.7 V)."""
    return round(rng.uniform(13.6, 14.4) if rng.random() < 0.7 else rng.uniform(12.3, 12.7), 1)


class Fleet:
    def __init__(self, specs, data_dir, broker, crews=True, seed=112, echo=False, roads=None):
        """`roads`: a road graph (gateway.roads) the units drive on (simulators.roaddrive);
        None: the street grid of simulators.route."""
        self.specs = specs
        self.roads = roads
        self.data_dir = Path(data_dir)
        self.broker = broker
        self.crews = crews
        self.rng = random.Random(seed)
        self.echo = echo
        self.units = {}
        self.stop_event = threading.Event()

    def start(self):
        for spec in self.specs:
            unit = VirtualUnit(
                spec.unit_id,
                self.data_dir / "flash" / spec.unit_id,
                self.data_dir / "sim",
                self.broker,
                start_xy=(spec.home.x, spec.home.y),
                seed=self.rng.random(),
                echo=self.echo,
                supply_v=supply_volts(self.rng),
                roads=self.roads,
            ).start()
            self.units[spec.unit_id] = unit
            if self.crews:
                Crew(unit, spec, random.Random(self.rng.random()), self.stop_event).start()
        return self

    def stop(self):
        self.stop_event.set()
        for unit in self.units.values():  # ignition off everywhere, then wait for each
            if unit.running:
                unit.power_off()
        for unit in self.units.values():
            unit.stop()
