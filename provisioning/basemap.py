"""The dispatcher's offline basemap: an OSM extract (.osm.pbf) made into one PMTiles
archive of vector tiles, which the gateway serves and the page draws (docs/map.md).

    build_basemap(pbf, out, progress=None) -> facts about the archive

tilemaker (Debian package) cuts the extract into Mapbox vector tiles with our own
config and Lua process file (basemap.json, basemap.lua beside this module: roads by
class, rivers and water, buildings, places, and the OSM `name` of each), into an
MBTiles file; the `pmtiles` package converts that into one PMTiles archive. The
archive is written beside `out` and renamed over it, so a reader of `out` sees the old
archive or the new one, never half of one.

Errors are BasemapError (a SiagaError: the CLI prints it, exit code 2): tilemaker
missing or failing, an input that is not an OSM extract.
"""

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from pmtiles.convert import mbtiles_to_pmtiles
from pmtiles.reader import MmapSource, Reader

from gateway.errors import SiagaError

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "basemap.json"
PROCESS = HERE / "basemap.lua"
LAYERS = ("roads", "waterways", "water", "buildings", "places")
# How much of the whole each stage is, for the progress bar: reading the extract,
# writing the tiles, converting to PMTiles.
STAGES = {"read": (0.0, 0.3), "tiles": (0.3, 0.9), "convert": (0.9, 1.0)}
BLOCK = re.compile(rb"Block (\d+)/(\d+)")
TILE = re.compile(rb"writing tile (\d+) of (\d+)")
TAIL = 4000  # bytes of tilemaker's output kept for an error message
# An extract bigger than this (a province) keeps tilemaker's node and way store in a
# file in the work folder (--store) rather than in memory: a gateway host is no build server.
STORE_ABOVE = 64 * 1024 * 1024


class BasemapError(SiagaError):
    code = "basemap"


def tilemaker():
    """The tilemaker executable, or BasemapError saying how to install it."""
    found = shutil.which("tilemaker")
    if not found:
        raise BasemapError(
            "tilemaker is not installed: `make tilemaker` installs it (Debian: apt-get install tilemaker)"
        )
    return found


def build_basemap(pbf, out, progress=None):
    """Build the PMTiles archive `out` from the OSM extract `pbf`. `progress(fraction,
    stage)` is called as it goes (fraction 0..1; stage "read", "tiles" or "convert").
    Returns {"path", "bytes", "tiles", "min_zoom", "max_zoom", "bounds" [W, S, E, N],
    "layers"}."""
    pbf, out = Path(pbf), Path(out)
    exe = tilemaker()
    bbox = _bbox(pbf)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = _onward(progress or (lambda fraction, stage: None))
    with tempfile.TemporaryDirectory(prefix=".basemap-", dir=out.parent) as work:
        mbtiles = Path(work) / "basemap.mbtiles"
        _tilemaker(exe, pbf, mbtiles, bbox, work, report)
        report(STAGES["convert"][0], "convert")
        part = Path(work) / "basemap.pmtiles"
        tiles = _convert(mbtiles, part)
        os.replace(part, out)  # same folder: atomic
    report(1.0, "convert")
    return dict(describe(out), tiles=tiles)


def _onward(progress):
    """`progress` that never goes back (tilemaker counts each zoom's tiles anew)."""
    done = 0.0

    def report(fraction, stage):
        nonlocal done
        done = max(done, round(fraction, 4))
        progress(done, stage)

    return report


def describe(path):
    """What a PMTiles archive holds, from its header and metadata (pmtiles' reader)."""
    with open(path, "rb") as f:
        reader = Reader(MmapSource(f))
        header, metadata = reader.header(), reader.metadata()
    bounds = [header[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")]
    return {
        "path": str(path),
        "bytes": Path(path).stat().st_size,
        "min_zoom": header["min_zoom"],
        "max_zoom": header["max_zoom"],
        "bounds": bounds,
        "layers": [layer["id"] for layer in _vector_layers(metadata)],
    }


def _vector_layers(metadata):
    import json

    layers = metadata.get("vector_layers")
    if layers is None and isinstance(metadata.get("json"), str):  # MBTiles' metadata as converted
        layers = json.loads(metadata["json"]).get("vector_layers")
    return layers or []


def _bbox(pbf):
    """The extract's bounding box "W,S,E,N": its header's, else its nodes' (a file
    written without one, like the demo town). BasemapError if it is not an OSM file."""
    import osmium

    try:
        box = osmium.io.Reader(str(pbf), osmium.osm.osm_entity_bits.NOTHING).header().box()
        if box.valid():
            (west, south), (east, north) = _lonlat(box.bottom_left), _lonlat(box.top_right)
        else:
            west, south, east, north = _nodes_box(osmium.FileProcessor(str(pbf), osmium.osm.NODE))
    except (RuntimeError, OSError) as e:
        raise BasemapError(f"{pbf} is not an OSM extract that can be read: {e}") from None
    return "%.7f,%.7f,%.7f,%.7f" % (west, south, east, north)


def _lonlat(location):
    return location.lon, location.lat


def _nodes_box(nodes):
    west = south = 180.0
    east = north = -180.0
    for node in nodes:
        if node.location.valid():
            lon, lat = node.location.lon, node.location.lat
            west, east, south, north = min(west, lon), max(east, lon), min(south, lat), max(north, lat)
    if west > east:
        raise BasemapError("the extract holds no located node: nothing to draw")
    return west, south, east, north


def _tilemaker(exe, pbf, mbtiles, bbox, work, report):
    cmd = [exe, "--input", str(pbf), "--output", str(mbtiles), "--bbox", bbox]
    cmd += ["--config", str(CONFIG), "--process", str(PROCESS), "--threads", str(os.cpu_count() or 1)]
    if pbf.stat().st_size > STORE_ABOVE:
        cmd += ["--store", str(Path(work) / "store")]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail = b""
    while chunk := proc.stdout.read1(65536):
        tail = (tail + chunk)[-TAIL:]
        _progress(chunk, report)
    if proc.wait() != 0 or not mbtiles.exists():
        text = tail.decode(errors="replace").replace("\r", "\n").strip().splitlines()[-12:]
        raise BasemapError(f"tilemaker failed (exit {proc.returncode}) on {pbf}:\n" + "\n".join(text))


def _progress(chunk, report):
    """tilemaker's own counters ("Block 3/10", "writing tile 32 of 42") as a fraction."""
    for stage, pattern in (("read", BLOCK), ("tiles", TILE)):
        found = pattern.findall(chunk)
        if found:
            done, total = (int(n) for n in found[-1])
            lo, hi = STAGES[stage]
            report(lo + (hi - lo) * min(1.0, done / max(total, 1)), stage)


def _convert(mbtiles, pmtiles):
    """MBTiles to PMTiles (pmtiles' converter); the number of tiles."""
    db = sqlite3.connect(mbtiles)
    try:
        (tiles,) = db.execute("SELECT count(*) FROM tiles").fetchone()
    finally:
        db.close()
    if not tiles:
        raise BasemapError("tilemaker made no tile: the extract holds nothing the basemap draws")
    mbtiles_to_pmtiles(str(mbtiles), str(pmtiles), None)
    return tiles
