"""Road graph figures (gateway/roads.py, provisioning/mapimport.py), on generated grid
towns (simulators/town.py write_extract: streets of mixed classes, a tenth buildings).

- `routing.nearest_ms_p99`: one ranking as GET /nearest computes it (snap the incident
  and every unit, one search over the reversed graph, sort), 50 available units on a
  10,000-node graph, 99th percentile over 300 incidents at seeded random places.
- `map.import_s_per_100k_ways`: `siaga map import` of an extract of 100,000 ways, the
  ROAD GRAPH ONLY (read with pyosmium, build, write, meta.json, swap in); the basemap's
  tilemaker run is not in this figure.
"""

import random
import statistics
import tempfile
import time
from pathlib import Path

from gateway import nearest
from gateway.roads import read_graph
from provisioning.mapimport import import_map
from simulators.town import write_extract

GRID_WAYS = 21_800  # write_extract makes a 100 x 100 grid of this: 10,000 road nodes
UNITS = 50
INCIDENTS = 300
IMPORT_WAYS = 100_000


def _graph(root):
    import_map(write_extract(root / "grid.osm.pbf", GRID_WAYS), root / "grid", progress=False, basemap=False)
    return read_graph(root / "grid" / "map" / "roads.graph")


def nearest_ms(graph, rng):
    south, west, north, east = graph.bounds()

    def place():
        return rng.uniform(south, north), rng.uniform(west, east)

    units = [
        {"unit_id": f"u{i}", "position": dict(zip(("lat", "lon"), place(), strict=True))}
        for i in range(UNITS)
    ]
    graph.snap(*place())  # the grid index is built once, at the first request
    times = []
    for _ in range(INCIDENTS):
        incident = place()
        start = time.perf_counter()
        method, _, _ = nearest.rank(graph, None, incident, [dict(u) for u in units])
        times.append((time.perf_counter() - start) * 1000)
        assert method == "road"
    return statistics.quantiles(times, n=100)[98]


def import_s(root):
    pbf = write_extract(root / "big.osm.pbf", IMPORT_WAYS)
    start = time.perf_counter()
    import_map(pbf, root / "big", progress=False, basemap=False)
    return (time.perf_counter() - start) * 100_000 / IMPORT_WAYS


def figures():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        graph = _graph(root)
        assert 9_900 <= graph.nodes <= 10_000, graph.nodes
        p99 = nearest_ms(graph, random.Random(14))
        per_100k = import_s(root)
    return [
        ("routing.nearest_ms_p99", round(p99, 2), "ms"),
        ("map.import_s_per_100k_ways", round(per_100k, 2), "s"),
    ]
