"""A synthetic OSM extract for the demo, the tests and the bench: nothing is downloaded.

`write_town(path)` writes a small town laid out around Palangka Raya: the street grid of
`simulators.route` (every `BLOCK_M` metres east and north of `geo.CENTRE`, so the virtual
units drive on these streets), cut in two by a river (Sungai Kahayan, a `waterway=river`
line and a `natural=water` area) that exactly two bridges (`bridge=yes`) cross. Streets
carry names in Bahasa Indonesia and the classes primary, secondary and residential; one
street is one-way, one has a `maxspeed`, a few blocks have buildings. The `place=city` node
says it is a demo map (`note`, and `siaga:demo=yes`, which `siaga map import` reads).

`write_extract(path, ways)` writes a bigger plain grid of about that many ways for the
benchmark of the import. Both are deterministic: the same call writes the same bytes.

    from simulators.town import write_town, BRIDGES_X, RIVER_Y
"""

from pathlib import Path

import osmium
from osmium.osm.mutable import Node, Way

from .geo import to_latlon
from .route import BLOCK_M

HALF = 8  # streets from -HALF to +HALF blocks: a town 4 km across
RIVER_Y = -0.5 * BLOCK_M  # the river's middle line runs between the streets at y=0 and y=-BLOCK_M
RIVER_HALF_WIDTH_M = 60.0
BRIDGES_X = (-6 * BLOCK_M, 4 * BLOCK_M)  # the north-south streets that cross the river
DEMO_NOTE = "Peta demo Siaga: kota sintetis, bukan jalan sebenarnya (Siaga demo map, not real streets)"

# North of the river (j >= 0) and south of it (j < 0): east-west street names by row.
EW_NAMES = {
    8: "Jalan Tjilik Riwut",
    7: "Jalan Rajawali",
    6: "Jalan Beliang",
    5: "Jalan Seth Adji",
    4: "Jalan Ahmad Yani",
    3: "Jalan Diponegoro",
    2: "Jalan Imam Bonjol",
    1: "Jalan Kartini",
    0: "Jalan Dr. Murjani",
    -1: "Jalan Tepian Kahayan",
    -2: "Jalan Pangeran Antasari",
    -3: "Jalan Temanggung Tilung",
    -4: "Jalan Mahir Mahar",
    -5: "Jalan Bukit Keminting",
    -6: "Jalan Halmahera",
    -7: "Jalan Piranha",
    -8: "Jalan Kinibalu",
}
NS_NAMES = {
    -8: "Jalan Sisingamangaraja",
    -7: "Jalan Pattimura",
    -6: "Jalan Yos Sudarso",
    -5: "Jalan Sudirman",
    -4: "Jalan Katamso",
    -3: "Jalan Kapten Piere Tendean",
    -2: "Jalan RTA Milono",
    -1: "Jalan Garuda",
    0: "Jalan Dr. Sam Ratulangi",
    1: "Jalan Cut Nyak Dhien",
    2: "Jalan Teuku Umar",
    3: "Jalan Kalimantan",
    4: "Jalan G. Obos",
    5: "Jalan Menteng",
    6: "Jalan Nyai Balau",
    7: "Jalan Sapan",
    8: "Jalan Hiu Putih",
}
PRIMARY_EW = {4, -4}  # east-west arterials, one on each bank
SECONDARY_EW = {8, -8}
ONEWAY_EW = 0  # Jalan Dr. Murjani, along the north bank: one-way eastbound
MAXSPEED_EW = {-4: "60"}


def write_town(path):
    """Write the demo town as an .osm.pbf at `path` (overwritten). Returns the path."""
    path = Path(path)
    b = _Builder()
    _streets(b)
    _river(b)
    _buildings(b)
    place = {"place": "city", "name": "Palangka Raya", "note": DEMO_NOTE, "siaga:demo": "yes"}
    b.node(b.place_id, to_latlon(0, 2 * BLOCK_M), **place)
    b.write(path)
    return path


def write_extract(path, ways, block_m=BLOCK_M):
    """Write a plain grid town of about `ways` ways (one a block side, a tenth of them
    buildings, streets mostly residential with secondary and primary every few rows)."""
    path = Path(path)
    b = _Builder()
    streets = int(ways * 0.9)
    k = max(2, int((streets / 2) ** 0.5) + 1)  # a k x k grid has 2k(k-1) block sides
    for i in range(-k // 2, k - k // 2):
        for j in range(-k // 2, k - k // 2):
            b.grid_node(i, j, block_m)
    made = 0
    for j in range(-k // 2, k - k // 2):
        for i in range(-k // 2, k - k // 2):
            for di, dj in ((1, 0), (0, 1)):
                if made >= streets or (i + di) >= k - k // 2 or (j + dj) >= k - k // 2:
                    continue
                row = j if di else i
                highway = "primary" if row % 10 == 0 else "secondary" if row % 5 == 0 else "residential"
                b.way([b.gid(i, j), b.gid(i + di, j + dj)], highway=highway, name="Jalan %d" % row)
                made += 1
    for n in range(ways - made):
        i, j = n % k - k // 2, (n // k) % k - k // 2
        b.building(i * block_m + 30, j * block_m + 30)
    b.write(path)
    return path


class _Builder:
    """Nodes and ways with deterministic ids, written in the order OSM files use."""

    def __init__(self):
        self.nodes, self.ways = [], []
        self.ids = {}
        self.next_node, self.next_way = 1, 1
        self.place_id = self._new_node_id()

    def _new_node_id(self):
        self.next_node += 1
        return self.next_node - 1

    def node(self, nid, latlon, **tags):
        self.nodes.append((nid, latlon, dict(tags)))
        return nid

    def free_node(self, x, y):
        return self.node(self._new_node_id(), to_latlon(x, y))

    def grid_node(self, i, j, block_m=BLOCK_M):
        self.ids[(i, j)] = self.free_node(i * block_m, j * block_m)
        return self.ids[(i, j)]

    def gid(self, i, j):
        return self.ids[(i, j)]

    def way(self, refs, **tags):
        self.ways.append((self.next_way, list(refs), dict(tags)))
        self.next_way += 1

    def building(self, x, y, w=20.0, h=14.0):
        corners = [self.free_node(x + dx, y + dy) for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
        self.way(corners + corners[:1], building="yes")

    def write(self, path):
        path.unlink(missing_ok=True)
        header = osmium.io.Header()
        header.set("generator", "siaga simulators.town")
        writer = osmium.SimpleWriter(str(path), header=header)
        try:
            for nid, (lat, lon), tags in sorted(self.nodes):
                writer.add_node(Node(id=nid, location=(lon, lat), tags=tags, version=1))
            for wid, refs, tags in self.ways:
                writer.add_way(Way(id=wid, nodes=refs, tags=tags, version=1))
        finally:
            writer.close()


def _streets(b):
    for i in range(-HALF, HALF + 1):
        for j in range(-HALF, HALF + 1):
            b.grid_node(i, j)
    for j in range(-HALF, HALF + 1):
        _ew_street(b, j)
    for i in range(-HALF, HALF + 1):
        _ns_street(b, i)


def _ew_street(b, j):
    tags = {"name": EW_NAMES[j], "highway": _ew_class(j)}
    if j == ONEWAY_EW:
        tags["oneway"] = "yes"
    if j in MAXSPEED_EW:
        tags["maxspeed"] = MAXSPEED_EW[j]
    b.way([b.gid(i, j) for i in range(-HALF, HALF + 1)], **tags)


def _ew_class(j):
    return "primary" if j in PRIMARY_EW else "secondary" if j in SECONDARY_EW else "residential"


def _ns_street(b, i):
    x = i * BLOCK_M
    highway = "primary" if x in BRIDGES_X else "residential"
    name = NS_NAMES[i]
    b.way([b.gid(i, j) for j in range(0, HALF + 1)], highway=highway, name=name)  # north bank
    b.way([b.gid(i, j) for j in range(-HALF, 0)], highway=highway, name=name)  # south bank
    if x in BRIDGES_X:
        b.way([b.gid(i, -1), b.gid(i, 0)], highway=highway, name=name, bridge="yes", layer="1")


def _river(b):
    west, east = (-HALF - 2) * BLOCK_M, (HALF + 2) * BLOCK_M
    line = [b.free_node(x, RIVER_Y) for x in (west, 0.0, east)]
    b.way(line, waterway="river", name="Sungai Kahayan")
    y0, y1 = RIVER_Y - RIVER_HALF_WIDTH_M, RIVER_Y + RIVER_HALF_WIDTH_M
    ring = [b.free_node(x, y) for x, y in ((west, y0), (east, y0), (east, y1), (west, y1))]
    b.way(ring + ring[:1], natural="water", water="river", name="Sungai Kahayan")


def _buildings(b):
    """A few buildings in every third block, set back from the street corner."""
    for i in range(-HALF, HALF, 3):
        for j in range(-HALF, HALF, 2):
            if j == -1:
                continue  # the river runs through these blocks
            for k in range(3):
                b.building(i * BLOCK_M + 25 + 70 * k, j * BLOCK_M + 25)
