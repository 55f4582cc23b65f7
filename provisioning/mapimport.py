"""`siaga map import REGION.osm.pbf`: the centre's OSM extract into the data folder.

    <data>/map/roads.graph      the road graph for drive times (gateway/roads.py)
    <data>/map/basemap.pmtiles  the offline basemap (provisioning/basemap.py), when
                                tilemaker is installed
    <data>/map/meta.json        source file, its sha256, when, bounds, counts, demo flag

The extract is read once with pyosmium, node locations kept for the ways. Road speeds
come from <data>/roads.toml when it exists (gateway/roadspeeds.py). Everything is built
in a temporary folder beside `map/` and swapped in with one exchange of the two folders
(renameat2 RENAME_EXCHANGE; two renames where that is missing), so the gateway sees the
old map or the new one, never a mix; a failed import leaves the old map as it was.
"""

import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import osmium
from tqdm import tqdm

from gateway import roadspeeds
from gateway.errors import SiagaError
from gateway.roads import E7, GraphBuilder

PBF_MAGIC = b"\x0a\x09OSMHeader"  # the first BlobHeader of every OSM PBF, after its length
# A way is urban (roadspeeds: urban speeds) within this many metres of a place node.
URBAN_RADIUS_M = {"city": 7000, "town": 3000, "suburb": 1500, "village": 800}
PLACE_CELL = 0.1  # degrees: the place index's cells (11 km, more than the largest radius)


class MapImportError(SiagaError):
    code = "map_import"


def sniff(path):
    """ "pbf" or "xml" by the file's first bytes; MapImportError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError as e:
        raise MapImportError(f"{path}: {e.strerror}") from None
    if head[4:15] == PBF_MAGIC:
        return "pbf"
    if head.lstrip().startswith((b"<?xml", b"<osm")) and b"<osm" in head:
        return "xml"
    what = "is empty" if not head else f"starts with {head[:16]!r}"
    raise MapImportError(f"{path} is not an OpenStreetMap extract (.osm.pbf or .osm): the file {what}")


class _Places:
    """Place nodes, to tell urban ways from rural ones, and the demo map's tag."""

    def __init__(self):
        self.cells, self.demo = {}, False

    def add(self, node):
        radius = URBAN_RADIUS_M.get(node.tags.get("place"))
        if node.tags.get("siaga:demo") == "yes":
            self.demo = True
        if radius and node.location.valid():
            lat, lon = node.location.lat, node.location.lon
            self.cells.setdefault(self._cell(lat, lon), []).append((lat, lon, radius))

    def _cell(self, lat, lon):
        return int(lat // PLACE_CELL), int(lon // PLACE_CELL)

    def urban(self, lat, lon):
        cy, cx = self._cell(lat, lon)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                for plat, plon, radius in self.cells.get((cy + dy, cx + dx), ()):
                    dlat = (lat - plat) * 111_320
                    dlon = (lon - plon) * 111_320 * 0.99  # near the equator: cos(lat) ~ 1
                    if dlat * dlat + dlon * dlon <= radius * radius:
                        return True
        return False


def read_extract(path, speeds, progress=None):
    """(GraphBuilder with the extract's drivable ways, facts). `progress(n)` every 10,000
    objects."""
    kind = sniff(path)
    builder, places = GraphBuilder(speeds), _Places()
    counts = {"nodes_read": 0, "ways_read": 0}
    n = 0
    try:
        fp = osmium.FileProcessor(osmium.io.File(str(path), kind)).with_locations()
        for n, obj in enumerate(fp):
            if progress and n % 10_000 == 0:
                progress(n)
            if obj.is_node():
                counts["nodes_read"] += 1
                if "place" in obj.tags:
                    places.add(obj)
            elif obj.is_way():
                counts["ways_read"] += 1
                _add_way(builder, places, obj)
    except (RuntimeError, osmium.InvalidLocationError) as e:
        raise MapImportError(f"{path}: not a readable OpenStreetMap extract ({e})") from None
    if progress:
        progress(n + 1)
    if counts["nodes_read"] == 0:
        raise MapImportError(f"{path}: an OpenStreetMap file with no nodes: nothing to import")
    return builder, dict(counts, drivable_ways=builder.ways, demo=places.demo)


def _add_way(builder, places, way):
    if "highway" not in way.tags:
        return
    tags = dict(way.tags)
    try:
        nodes = [(n.ref, round(n.location.lat * E7), round(n.location.lon * E7)) for n in way.nodes]
    except osmium.InvalidLocationError:
        return  # a way cut by the extract's edge: its outside nodes have no location
    first = way.nodes[0].location
    builder.add_way(nodes, tags, places.urban(first.lat, first.lon))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_map(pbf, data_dir, progress=True, basemap=True, clock=time.time):
    """Import the extract `pbf` into `<data_dir>/map`; returns its meta.json as a dict."""
    pbf, data_dir = Path(pbf), Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with _import_lock(data_dir):
        speeds_file = data_dir / "roads.toml"
        speeds = roadspeeds.load_speeds(speeds_file)
        work = data_dir / f".map.import-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            meta = _build(pbf, work, speeds, speeds_file, progress, basemap, clock)
            _swap_in(work, data_dir / "map")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return meta


def _build(pbf, work, speeds, speeds_file, progress, basemap, clock):
    with tqdm(desc="roads", unit=" objects", disable=not progress, unit_scale=True) as bar:
        builder, facts = read_extract(pbf, speeds, lambda n: bar.update(n - bar.n))
    graph = builder.build()
    if graph.nodes == 0:
        raise MapImportError(f"{pbf}: no drivable roads in this extract: nothing to route on")
    graph.write(work / "roads.graph")
    south, west, north, east = graph.bounds()
    meta = {
        "source": pbf.name,
        "sha256": sha256(pbf),
        "imported_at": clock(),
        "bounds": {"south": south, "west": west, "north": north, "east": east},
        "counts": {k: facts[k] for k in ("nodes_read", "ways_read", "drivable_ways")},
        "graph": {"nodes": graph.nodes, "edges": graph.edges},
        "demo": facts["demo"],
        "speeds": {"file": str(speeds_file) if speeds_file.exists() else None},
        "basemap": _basemap(pbf, work, progress) if basemap else None,
    }
    (work / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _basemap(pbf, work, progress):
    """The basemap archive beside the graph, when its tools are here; else None."""
    if not shutil.which("tilemaker"):
        return None
    from . import basemap

    with tqdm(desc="basemap", total=100, unit="%", disable=not progress) as bar:
        facts = basemap.build_basemap(
            pbf, work / "basemap.pmtiles", lambda f, _: bar.update(round(100 * f) - bar.n)
        )
    return dict(facts, path="basemap.pmtiles")  # beside meta.json


class _import_lock:
    """One import at a time in a data folder."""

    def __init__(self, data_dir):
        self.path = data_dir / ".map.lock"

    def __enter__(self):
        self.f = open(self.path, "w")  # noqa: SIM115 (closed in __exit__)
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.close()
            raise MapImportError(f"another map import is running in {self.path.parent}") from None
        return self

    def __exit__(self, *exc):
        self.f.close()


def _swap_in(new, current):
    """Put folder `new` at `current`; the old one (if any) ends at `new`'s name."""
    if current.exists() and _exchange(new, current):
        return
    if current.exists():
        old = new.with_name(new.name + ".old")
        os.rename(current, old)
        os.rename(new, current)
        os.rename(old, new)
    else:
        os.rename(new, current)


def _exchange(a, b):
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
