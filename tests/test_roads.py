"""The road graph and drive-time nearest on the demo town (simulators/town.py): a street
grid cut by a river that two bridges cross, one one-way street. Real parts: the town
written as a real .osm.pbf, read with pyosmium, the graph file on disk, the gateway as
its own process over HTTP."""

import json
import math
import random
import struct
import subprocess
import sys
import time
import zlib

import httpx
import pytest
from conftest import REPO, wait_until

from gateway import roadspeeds
from gateway.errors import ConfigError
from gateway.roads import (
    E7,
    HEADER,
    MAGIC,
    GraphBuilder,
    RoadGraphError,
    RoadMap,
    drive_times,
    graph_from_bytes,
    read_graph,
)
from provisioning.mapimport import MapImportError, import_map
from simulators.geo import to_latlon, to_xy
from simulators.route import BLOCK_M
from simulators.town import BRIDGES_X, RIVER_Y, write_extract, write_town

sys.path.insert(0, str(REPO / "firmware" / "lib"))
import wire  # noqa: E402  (the unit's own encoder: what a unit sends)

# Around the town's centre: the incident on the north bank, 40 m from the corner (0, 0);
# one unit right across the river (210 m as the crow flies), one 4 blocks west and 2
# north on the same bank (1.1 km as the crow flies).
INCIDENT = to_latlon(0, -40)
ACROSS = to_latlon(0, -BLOCK_M)
SAME_BANK = to_latlon(-4 * BLOCK_M, 2 * BLOCK_M)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(50)


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    """The town imported once: (the .osm.pbf, the data folder, the graph)."""
    root = tmp_path_factory.mktemp("town")
    pbf = write_town(root / "town.osm.pbf")
    import_map(pbf, root / "data", progress=False, basemap=False)
    return pbf, root / "data", read_graph(root / "data" / "map" / "roads.graph")


def node_xy(graph, i):
    return to_xy(graph.lat[i] / E7, graph.lon[i] / E7)


def test_the_town_is_a_street_grid_with_its_meta(town):
    pbf, data, graph = town
    meta = json.loads((data / "map" / "meta.json").read_text())
    assert meta["demo"] is True and meta["source"] == "town.osm.pbf" and len(meta["sha256"]) == 64
    assert graph.nodes == 17 * 17 == meta["graph"]["nodes"]
    assert meta["counts"]["drivable_ways"] < meta["counts"]["ways_read"]  # buildings, the river: no roads
    south, west, north, east = graph.bounds()
    assert meta["bounds"] == {"south": south, "west": west, "north": north, "east": east}
    assert south < -2.21 < north and west < 113.915 < east


def test_only_the_two_bridges_cross_the_river(town):
    _, _, graph = town
    crossings = set()
    for v in range(graph.nodes):
        for k in range(graph.offsets[v], graph.offsets[v + 1]):
            (ux, uy), (_, vy) = node_xy(graph, graph.tails[k]), node_xy(graph, v)
            if (uy - RIVER_Y) * (vy - RIVER_Y) < 0:
                crossings.add(round(ux))
    assert crossings == {round(x) for x in BRIDGES_X}


def test_one_way_street_is_driven_one_way_only(town):
    """Jalan Dr. Murjani (y = 0) is one-way eastbound: 500 m east along it, but west
    round the block."""
    _, _, graph = town
    west, east = to_latlon(-BLOCK_M, 0), to_latlon(BLOCK_M, 0)
    eastbound = drive_times(graph, east, {"u": west})["u"]
    westbound = drive_times(graph, west, {"u": east})["u"]
    assert eastbound["road_m"] == pytest.approx(2 * BLOCK_M, rel=0.01)
    assert westbound["road_m"] == pytest.approx(4 * BLOCK_M, rel=0.01)  # up, along y=250, down
    assert westbound["seconds"] > eastbound["seconds"]


def test_across_the_river_the_straight_line_nearest_is_not_the_nearest_by_road(town):
    _, _, graph = town
    times = drive_times(graph, INCIDENT, {"across": ACROSS, "same_bank": SAME_BANK}, routes={"across"})
    assert dist(INCIDENT, ACROSS) < dist(INCIDENT, SAME_BANK)
    assert times["same_bank"]["seconds"] < times["across"]["seconds"]
    # by hand: 4 blocks east and 2 south on the grid, plus 40 m from the corner
    assert times["same_bank"]["road_m"] == pytest.approx(6 * BLOCK_M + 40, rel=0.01)
    # east to the bridge at x=1000, over it, and round the one-way street: 11 blocks
    assert times["across"]["road_m"] == pytest.approx(11 * BLOCK_M + 40, rel=0.01)
    route = [to_xy(lat, lon) for lat, lon in times["across"]["route"]]
    assert any(abs(x - BRIDGES_X[1]) < 1 for x, _ in route)  # over the eastern bridge
    assert route[0] == pytest.approx(to_xy(*ACROSS)) and route[-1] == pytest.approx(to_xy(*INCIDENT))


def test_a_position_far_from_every_road_is_off_the_roads(town):
    _, _, graph = town
    far = to_latlon(9000, 9000)
    assert drive_times(graph, far, {"u": ACROSS}) is None  # the incident: straight line instead
    assert drive_times(graph, INCIDENT, {"u": far, "v": ACROSS}) == {
        "u": None,
        "v": drive_times(graph, INCIDENT, {"v": ACROSS})["v"],
    }


def test_a_long_straight_road_gets_nodes_between_so_a_unit_on_it_snaps_where_it_is(tmp_path):
    """A rural road drawn as one 2 km segment: a unit at its middle is on the road, 1 km
    from either end, not 1 km off it."""
    (w, e), lat = (to_latlon(x, 0)[1] for x in (-1000, 1000)), to_latlon(0, 0)[0]
    xml = tmp_path / "road.osm"
    xml.write_text(
        f'<?xml version="1.0"?><osm version="0.6"><node id="1" lat="{lat}" lon="{w}" version="1"/>'
        f'<node id="2" lat="{lat}" lon="{e}" version="1"/><way id="1" version="1"><nd ref="1"/>'
        '<nd ref="2"/><tag k="highway" v="secondary"/></way></osm>'
    )
    import_map(xml, tmp_path / "data", progress=False, basemap=False)
    graph = read_graph(tmp_path / "data" / "map" / "roads.graph")
    assert graph.nodes == 2 + 7  # 2 km in 8 pieces of 250 m
    east_end = to_latlon(1000, 0)
    t = drive_times(graph, east_end, {"middle": to_latlon(0, 20)})["middle"]
    assert t["road_m"] == pytest.approx(1000 + 20, rel=0.01)


@pytest.mark.parametrize("seed", range(5))
def test_the_search_over_the_reversed_graph_agrees_with_bellman_ford_forward(seed):
    """Random towns of random ways, some one-way: the time from every node to the
    incident's node, by one search over the reversed CSR graph, is what relaxing the
    forward edges (as the builder made them) gives."""
    rng = random.Random(seed)
    builder = GraphBuilder()
    spots = [
        (i, -22_100_000 + rng.randint(-20_000, 20_000), 1_139_150_000 + rng.randint(-20_000, 20_000))
        for i in range(30)
    ]
    for _ in range(45):
        way = rng.sample(spots, rng.randint(2, 4))
        tags = {
            "highway": rng.choice(["primary", "residential", "service"]),
            "oneway": rng.choice(["no", "yes", "-1"]),
        }
        builder.add_way(way, tags)
    forward = list(zip(builder.tail, builder.head, builder.seconds, strict=True))
    graph = builder.build()
    goal = rng.randrange(graph.nodes)
    expect = [math.inf] * graph.nodes
    expect[goal] = 0.0
    for _ in range(graph.nodes):
        for a, b, t in forward:
            expect[a] = min(expect[a], t + expect[b])
    reached, _ = graph.search(goal, range(graph.nodes))
    assert set(reached) == {i for i, t in enumerate(expect) if t < math.inf}
    for node, t in reached.items():
        assert t == pytest.approx(expect[node], rel=1e-6)


def dist(a, b):
    (ax, ay), (bx, by) = to_xy(*a), to_xy(*b)
    return ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5


# ---- the graph file -------------------------------------------------------------------


def test_the_graph_file_reads_back_as_written(town):
    _, data, graph = town
    again = graph_from_bytes(graph.to_bytes())
    for name in ("lat", "lon", "offsets", "tails", "seconds", "metres"):
        assert getattr(again, name) == getattr(graph, name)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda b: b"", "not a Siaga road graph"),
        (lambda b: PNG, "not a Siaga road graph"),
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b + b"\0", "truncated"),
        (lambda b: b[:100] + bytes([b[100] ^ 0xFF]) + b[101:], "checksum"),
        (lambda b: MAGIC + struct.pack("<I", 99) + b[12:], "version 99"),
        (lambda b: MAGIC + struct.pack("<III", 1, 2**31, 2**31) + b[HEADER.size :], "more than"),
    ],
)
def test_a_damaged_or_foreign_graph_file_is_refused_with_its_reason(town, tmp_path, damage, reason):
    _, _, graph = town
    path = tmp_path / "roads.graph"
    path.write_bytes(damage(graph.to_bytes()))
    with pytest.raises(RoadGraphError, match=reason):
        read_graph(path)
    got, why = RoadMap(path).current()  # the gateway: straight-line nearest, and why
    assert got is None and reason in why


def test_a_graph_with_a_good_checksum_but_an_edge_to_nowhere_is_refused(town):
    _, _, graph = town
    graph.tails[0], saved = graph.nodes + 5, graph.tails[0]
    try:
        body = graph.to_bytes()[:-4]
    finally:
        graph.tails[0] = saved
    with pytest.raises(RoadGraphError, match="does not exist"):
        graph_from_bytes(body + struct.pack("<I", zlib.crc32(body)))


def test_the_gateway_reloads_the_graph_when_the_file_changes(town, tmp_path):
    _, data, graph = town
    path = tmp_path / "roads.graph"
    now = [0.0]
    roads = RoadMap(path, check_every=2.0, clock=lambda: now[0])
    assert roads.current() == (None, "no road map imported")
    graph.write(path)
    assert roads.current()[0] is None  # not checked again yet
    now[0] = 2.0
    assert roads.current()[0].nodes == graph.nodes
    path.write_bytes(b"junk")
    now[0] = 4.0
    assert roads.current()[0] is None


# ---- importing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, says",
    [
        (b"this is a text file, not a map\n", "starts with b'this is"),
        (b"", "is empty"),
        (PNG, "starts with b'\\x89PNG"),
        (b"\0\0\0\x0d\x0a\x09OSMHeader" + bytes(40), "not a readable OpenStreetMap extract"),
    ],
)
def test_an_import_of_what_is_not_osm_is_refused_and_keeps_the_map(town, tmp_path, content, says):
    pbf, _, _ = town
    data = tmp_path / "data"
    import_map(pbf, data, progress=False, basemap=False)
    before = (data / "map" / "roads.graph").read_bytes()
    bad = tmp_path / "region.osm.pbf"
    bad.write_bytes(content)
    with pytest.raises(MapImportError, match="OpenStreetMap") as refused:
        import_map(bad, data, progress=False, basemap=False)
    assert says in refused.value.message
    assert (data / "map" / "roads.graph").read_bytes() == before
    assert sorted(p.name for p in data.iterdir()) == [".map.lock", "map"]  # no half-built folder left


def test_an_osm_file_without_roads_is_refused(tmp_path):
    """OSM XML is read too; an extract with no drivable road has nothing to route on."""
    xml = tmp_path / "empty.osm"
    xml.write_text(
        '<?xml version="1.0"?><osm version="0.6"><node id="1" lat="-2.2" lon="113.9" version="1"/>'
        '<node id="2" lat="-2.3" lon="113.9" version="1"/>'
        '<way id="1" version="1"><nd ref="1"/><nd ref="2"/><tag k="waterway" v="river"/></way></osm>'
    )
    with pytest.raises(MapImportError, match="no drivable roads"):
        import_map(xml, tmp_path / "data", progress=False, basemap=False)
    assert not (tmp_path / "data" / "map").exists()


def test_a_second_import_replaces_the_map_whole(town, tmp_path):
    pbf, _, _ = town
    data = tmp_path / "data"
    import_map(pbf, data, progress=False, basemap=False)
    first = json.loads((data / "map" / "meta.json").read_text())
    extract = write_extract(tmp_path / "grid.osm.pbf", 400)
    second = import_map(extract, data, progress=False, basemap=False, clock=lambda: 1.0)
    assert json.loads((data / "map" / "meta.json").read_text()) == second
    assert second["sha256"] != first["sha256"] and second["demo"] is False and second["imported_at"] == 1.0
    assert (
        read_graph(data / "map" / "roads.graph").nodes == second["graph"]["nodes"] != first["graph"]["nodes"]
    )
    assert sorted(p.name for p in data.iterdir()) == [".map.lock", "map"]


def test_road_speeds_from_the_settings_file_are_checked(town, tmp_path):
    pbf, _, _ = town
    data = tmp_path / "data"
    data.mkdir()
    (data / "roads.toml").write_text("emergency_factor = 2.0\n[urban]\nresidential = 40\nprimary = 80\n")
    import_map(pbf, data, progress=False, basemap=False)
    _, _, slow = town
    fast = read_graph(data / "map" / "roads.graph")
    times = [drive_times(g, INCIDENT, {"u": SAME_BANK})["u"] for g in (slow, fast)]
    assert times[1]["road_m"] == pytest.approx(times[0]["road_m"])
    assert times[1]["seconds"] < times[0]["seconds"] / 3

    for text, says in (
        ("[urban]\nhovercraft = 40\n", "unknown road class 'hovercraft'"),
        ("[urban]\nprimary = -5\n", "must be above 0"),
        ("[rural]\nprimary = nan\n", "is not a number"),
        ("[rural]\nprimary = '40'\n", "is not a number"),
        ("speed = 3\n", "unknown setting 'speed'"),
        ("[urban\n", "not valid TOML"),
    ):
        (data / "roads.toml").write_text(text)
        with pytest.raises(ConfigError, match="road speeds") as refused:
            import_map(pbf, data, progress=False, basemap=False)
        assert says in refused.value.message
    (data / "roads.toml").unlink()
    (data / "roads.json").write_text(json.dumps({"rural": {"motorway": 100}}))
    assert roadspeeds.load_speeds(data / "roads.json").rural["motorway"] == 100


@pytest.mark.parametrize(
    "tag, kmh",
    [("50", 50), ("50 km/h", 50), ("50kmh", 50), ("30 mph", 30 * 1.609344), ("ID:urban", 50)]
    + [(bad, None) for bad in ("none", "signals", "walk", "0", "-5", "999", "50 knots", "", None)],
)
def test_maxspeed_tags(tag, kmh):
    assert roadspeeds.parse_maxspeed(tag) == (pytest.approx(kmh) if kmh else None)


@pytest.mark.parametrize(
    "tags, direction",
    [
        ({"highway": "residential"}, 0),
        ({"highway": "residential", "oneway": "yes"}, 1),
        ({"highway": "residential", "oneway": "true"}, 1),
        ({"highway": "residential", "oneway": "1"}, 1),
        ({"highway": "residential", "oneway": "-1"}, -1),
        ({"highway": "primary", "junction": "roundabout"}, 1),
        ({"highway": "motorway"}, 1),
        ({"highway": "motorway", "oneway": "no"}, 0),
    ],
)
def test_one_way_rules(tags, direction):
    assert roadspeeds.oneway(tags) == direction


# ---- the gateway: GET /nearest by road ---------------------------------------------------


def put_unit(gateway, mqtt_client, unit_id, latlon):
    """A registered ambulance, available (key 2) at `latlon`, as its messages say."""
    gateway.register(unit_id, kind="ambulance")
    now = int(time.time())
    status = {"_type": "status", "boot": 1, "seq": 2, "key": 2, "t": now, "sent": now}
    birth = {"_type": "birth", "boot": 1, "seq": 0, "t": now, "sent": now}
    for topic, payload in (
        ("conn", json.dumps(birth).encode()),
        ("pos", wire.encode_pos(1, 1, now, *latlon, 0.0, 0.0, 9, 0.9, now)),
        ("status", json.dumps(status).encode()),
    ):
        mqtt_client.publish(f"siaga/{unit_id}/{topic}", payload, qos=1).wait_for_publish(5)
    wait_until(lambda: gateway.unit(unit_id)["availability"] == "available", what=f"{unit_id} available")


def nearest(gateway, latlon, **more):
    params = {"lat": latlon[0], "lon": latlon[1], "incident_kind": "medical", "limit": 100, **more}
    r = httpx.get(f"{gateway.url}/api/v1/nearest", params=params, headers=gateway.headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.headers["X-Nearest-Method"], r.headers.get("X-Nearest-Why"), r.json()


def test_nearest_over_http_by_road_once_a_map_is_imported(gateway, mqtt_client, unit_id, tmp_path):
    across, same_bank = f"{unit_id}-x", f"{unit_id}-s"
    put_unit(gateway, mqtt_client, across, ACROSS)
    put_unit(gateway, mqtt_client, same_bank, SAME_BANK)

    method, why, near = nearest(gateway, INCIDENT)
    mine = [u for u in near if u["unit_id"] in (across, same_bank)]
    assert (method, why) == ("straight", "no road map imported")
    assert [u["unit_id"] for u in mine] == [across, same_bank]  # straight: across the river first
    assert all(u["method"] == "straight" and u["eta_min"] is None for u in mine)

    import_map(write_town(tmp_path / "town.osm.pbf"), gateway.data_dir, progress=False, basemap=False)
    wait_until(lambda: nearest(gateway, INCIDENT)[0] == "road", what="the gateway reading the new map")
    method, why, near = nearest(gateway, INCIDENT, route="true")
    mine = [u for u in near if u["unit_id"] in (across, same_bank)]
    assert why is None and [u["unit_id"] for u in mine] == [same_bank, across]  # by road: the same bank
    assert all(u["method"] == "road" and u["eta_min"] > 0 for u in mine)
    assert mine[0]["road_m"] == pytest.approx(6 * BLOCK_M + 40, rel=0.01)
    assert mine[0]["distance_m"] > mine[1]["distance_m"]
    lons = {round(to_xy(lat, lon)[0]) for lon, lat in mine[1]["route"]["coordinates"]}
    assert round(BRIDGES_X[1]) in lons  # the route across goes over the eastern bridge

    where = [f"--lat={INCIDENT[0]}", f"--lon={INCIDENT[1]}", "--incident-kind=medical", "--limit=100"]
    run = subprocess.run(
        [sys.executable, "-m", "siaga", "nearest", *where, "--api", gateway.url, "--token", gateway.token],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    line = next(x for x in run.stdout.splitlines() if x.startswith(same_bank))
    assert f"ETA {mine[0]['eta_min']:5.1f} min" in line and "by road" in line, run.stdout

    method, why, _ = nearest(gateway, to_latlon(20_000, 0))
    assert method == "straight" and "from any road" in why

    status, body = gateway.request(
        "POST",
        f"/api/v1/units/{same_bank}/assign",
        {"lat": INCIDENT[0], "lon": INCIDENT[1], "kind": "medical"},
    )
    assert status == 200 and body["estimate"]["method"] == "road"
    assert body["estimate"]["eta_s"] == pytest.approx(mine[0]["eta_min"] * 60, abs=3)
    row = gateway.get(f"/api/v1/assignments?unit_id={same_bank}")[1][0]
    assert row["estimated_travel"] == body["estimate"]["eta_s"] and row["estimate_method"] == "road"
    assert row["travel_minus_estimate"] is None  # the crew has not arrived
    summary = gateway.get("/api/v1/response-times?group=unit")[1]
    mine = [s for s in summary if s["unit"] == same_bank][0]
    assert mine["estimated_travel"]["count"] == 1 and mine["travel_minus_estimate"]["count"] == 0


def test_nearest_refuses_bad_parameters(gateway):
    for query in ("lat=nan&lon=113.9", "lat=-2.2&lon=113.9&route=maybe", "lat=-2.2&lon=113.9&routes=1"):
        r = httpx.get(f"{gateway.url}/api/v1/nearest?{query}", headers=gateway.headers, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", query
