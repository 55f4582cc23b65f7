"""The demo fleet drives on the demo town's roads (simulators/roaddrive.py): every position
on a road of the imported graph, the river crossed only on its two bridges, the one-way
street driven only its way. Real parts: the town written as a .osm.pbf and imported with
`siaga map import`'s code; the movers are the ones the demo's units drive with."""

import math
import random

import pytest

from provisioning.mapimport import import_map
from simulators.demo import demo_map
from simulators.fleet import HOSPITAL, demo_specs, mission_scene
from simulators.geo import to_xy
from simulators.roaddrive import RoadMover, load_graph, road_drive
from simulators.route import Mover, city_drive
from simulators.town import BRIDGES_X, HALF, RIVER_HALF_WIDTH_M, RIVER_Y, write_town
from simulators.vunit import VirtualUnit

ON_ROAD_M = 2.0  # a position this near a road edge is on it
T0 = 1795860000.0


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    data = tmp_path_factory.mktemp("town")
    import_map(write_town(data / "town.osm.pbf"), data, progress=False, basemap=False)
    return load_graph(data)


class Roads:
    """The graph's edges as segments in metres (simulators.geo), bucketed by 50 m cell."""

    CELL = 50.0

    def __init__(self, graph):
        self.cells = {}
        for head in range(graph.nodes):
            b = _xy(graph, head)
            for k in range(graph.offsets[head], graph.offsets[head + 1]):
                a = _xy(graph, graph.tails[k])
                for cell in self._cells_of(a, b):
                    self.cells.setdefault(cell, []).append((a, b))

    def _cells_of(self, a, b):
        lo = [math.floor((min(a[i], b[i]) - ON_ROAD_M) / self.CELL) for i in (0, 1)]
        hi = [math.floor((max(a[i], b[i]) + ON_ROAD_M) / self.CELL) for i in (0, 1)]
        return [(i, j) for i in range(lo[0], hi[0] + 1) for j in range(lo[1], hi[1] + 1)]

    def off_road_m(self, x, y):
        cell = (math.floor(x / self.CELL), math.floor(y / self.CELL))
        return min((_segment_m((x, y), a, b) for a, b in self.cells.get(cell, ())), default=math.inf)


def _xy(graph, node):
    return to_xy(graph.lat[node] / 1e7, graph.lon[node] / 1e7)


def _segment_m(p, a, b):
    dx, dy = b[0] - a[0], b[1] - a[1]
    f = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy or 1)))
    return math.hypot(p[0] - a[0] - f * dx, p[1] - a[1] - f * dy)


def drive(mover, x, y, cruise, samples, limit=3600):
    """Drive to (x, y), one second a step, until arrived; True if it got there."""
    mover.drive_to(x, y, cruise=cruise)
    for _ in range(limit):
        if mover.arrived:
            return True
        samples.append(mover.step())
    return mover.arrived


def fleet_drives(graph, missions=6, seed=112):
    """Every demo unit's missions, as its crew drives them (fleet.Crew): to a scene around
    its home, an ambulance on to the hospital, back home."""
    rng = random.Random(seed)
    out = {}
    for spec in demo_specs(6):
        mover = RoadMover(graph, spec.home.x, spec.home.y, T0, random.Random(rng.random()))
        samples = [mover.step()]
        for _ in range(missions):
            assert drive(mover, *mission_scene(spec.home, rng), rng.uniform(12, 17), samples)
            if spec.kind == "ambulance":
                assert drive(mover, HOSPITAL.x, HOSPITAL.y, rng.uniform(12, 17), samples)
            assert drive(mover, spec.home.x, spec.home.y, rng.uniform(12, 17), samples)
        out[spec.unit_id] = samples
    return out


def pairs(samples):
    return zip(samples, samples[1:], strict=False)


def in_river(s):
    return abs(s.y - RIVER_Y) < RIVER_HALF_WIDTH_M


def on_bridge(s):
    return any(abs(s.x - x) < ON_ROAD_M for x in BRIDGES_X)


def on_oneway(a, b):
    """Both positions on Jalan Dr. Murjani (y = 0, one-way eastbound), moving along it."""
    return abs(a.y) < ON_ROAD_M and abs(b.y) < ON_ROAD_M and abs(b.x - a.x) > 0.5


def check_on_roads(roads, samples):
    worst = max(samples, key=lambda s: roads.off_road_m(s.x, s.y))
    assert roads.off_road_m(worst.x, worst.y) < ON_ROAD_M, f"off the roads at {worst}"
    for a, b in pairs(samples):
        assert math.hypot(b.x - a.x, b.y - a.y) <= max(a.speed, b.speed) + 1e-6  # at its speed
        if in_river(b) or (a.y - RIVER_Y) * (b.y - RIVER_Y) < 0:
            assert on_bridge(a) and on_bridge(b), f"across the river off a bridge: {a} -> {b}"
        if on_oneway(a, b):
            assert b.x > a.x, f"westbound on the one-way Jalan Dr. Murjani: {a} -> {b}"


def test_the_demo_fleet_drives_on_the_roads_only(town):
    roads = Roads(town)
    drives = fleet_drives(town)
    for samples in drives.values():
        check_on_roads(roads, samples)
    everything = [s for samples in drives.values() for s in samples]
    crossings = sum((a.y - RIVER_Y) * (b.y - RIVER_Y) < 0 for a, b in pairs(everything))
    assert crossings >= 4  # the missions do cross the river (on the bridges)
    assert sum(on_oneway(a, b) for a, b in pairs(everything)) > 10  # and drive the one-way
    assert all(abs(s.x) <= HALF * 250 + 0.1 and abs(s.y) <= HALF * 250 + 0.1 for s in everything)


def test_the_plain_street_grid_fails_the_same_check(town):
    """The check is real: the grid route of simulators.route (the benches' drives) swims
    the river, drives against the one-way street and leaves the town."""
    roads = Roads(town)
    for start, goal, why in (
        ((0, 500), (0, -500), "off the roads at .*y=-[0-9]|across the river"),  # in the water
        ((750, 0), (-750, 0), "westbound on the one-way"),
    ):
        samples = []
        assert drive(Mover(*start, T0, random.Random(1)), *goal, 14, samples)
        with pytest.raises(AssertionError, match=why):
            check_on_roads(roads, samples)
    with pytest.raises(AssertionError, match="off the roads"):
        check_on_roads(roads, city_drive(seed=1, duration_s=3600, start_t=T0))


def test_a_reference_drive_stays_on_the_roads_and_is_deterministic(town):
    samples = road_drive(town, seed=5, duration_s=3000, start_t=T0)
    check_on_roads(Roads(town), samples)
    assert road_drive(town, seed=5, duration_s=3000, start_t=T0) == samples
    assert road_drive(town, seed=6, duration_s=3000, start_t=T0) != samples
    assert max(s.speed for s in samples) > 10  # it drives, not only waits


def test_westward_along_the_one_way_street_it_goes_round_by_another(town):
    mover = RoadMover(town, 750, 0, T0, random.Random(1))  # on Jalan Dr. Murjani, one-way eastbound
    samples = [mover.step()]
    assert drive(mover, -750, 0, 14, samples)
    assert (mover.x, mover.y) == pytest.approx((-750, 0), abs=0.1)
    check_on_roads(Roads(town), samples)
    assert max(s.y for s in samples) >= 250 - 1e-6  # by the next street north, not against the arrows


def test_to_the_other_bank_it_takes_a_bridge(town):
    mover = RoadMover(town, 0, 500, T0, random.Random(2))  # north bank, between the two bridges
    samples = [mover.step()]
    assert drive(mover, 0, -500, 14, samples)  # straight across is 1 km; no bridge there
    check_on_roads(Roads(town), samples)
    assert any(on_bridge(s) and in_river(s) for s in samples)
    assert sum(math.hypot(b.x - a.x, b.y - a.y) for a, b in pairs(samples)) > 2000


def test_a_start_off_the_road_is_put_on_the_nearest_road_a_destination_outside_the_map_inside(town):
    mover = RoadMover(town, -700, -470, T0)  # 30 m north of Jalan Pangeran Antasari (y=-500)
    assert (mover.x, mover.y) == pytest.approx((-700, -500), abs=0.1)
    samples = [mover.step()]
    assert drive(mover, 9000, 9000, 14, samples)  # far outside the town: its north-east corner
    assert (mover.x, mover.y) == pytest.approx((HALF * 250, HALF * 250), abs=0.1)
    check_on_roads(Roads(town), samples)


def test_the_demo_imports_its_town_once_and_again_only_when_needed(tmp_path):
    lines = []

    def say(text, **_):
        lines.append(text)

    graph, what = demo_map(tmp_path, say)
    assert "importing the demo map" in lines[-1] and "synthetic" in what
    assert graph.nodes == (2 * HALF + 1) ** 2  # the street grid's corners
    meta = (tmp_path / "map" / "meta.json").read_text()
    graph, _ = demo_map(tmp_path, say)
    assert "using the demo map imported before" in lines[-1]
    assert (tmp_path / "map" / "meta.json").read_text() == meta  # not imported again
    (tmp_path / "map" / "roads.graph").write_bytes(b"not a graph")
    graph, _ = demo_map(tmp_path, say)
    assert "importing the demo map" in lines[-1] and graph.nodes == (2 * HALF + 1) ** 2


def test_a_virtual_unit_given_the_roads_drives_on_them_else_on_the_grid(town, tmp_path):
    on_roads = VirtualUnit("amb-09", tmp_path / "f1", tmp_path / "sim", start_xy=(-700, -470), roads=town)
    assert isinstance(on_roads.mover, RoadMover) and (on_roads.mover.x, on_roads.mover.y) == pytest.approx(
        (-700, -500), abs=0.1
    )
    on_grid = VirtualUnit("amb-10", tmp_path / "f2", tmp_path / "sim", start_xy=(-700, -470))
    assert type(on_grid.mover) is Mover and (on_grid.mover.x, on_grid.mover.y) == (-700, -470)
