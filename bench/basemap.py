"""The offline basemap over HTTP (gateway/api/basemap.py), as the page's PMTiles reader
asks for it: one byte range a tile, with an API token, from a real gateway process.

- `map.tile_p99_ms`: a tile's Range request answered (206, body read), 99th percentile
  over 2,000 requests cycling through the archive's tiles, warm (each tile read once
  before, so the file is in the page cache and the connection open); on an archive
  built by tilemaker from a generated grid town of 20,000 ways (simulators/town.py).
- `map.basemap_bytes_per_way`: the archive's size over the extract's ways, for a
  guess of the disk a province needs.
"""

import statistics
import tempfile
import time
from pathlib import Path

import httpx
from pmtiles.reader import MmapSource, all_tiles

from gateway.api.basemap import PATH
from provisioning.basemap import build_basemap
from provisioning.mosquitto import Mosquitto
from simulators.gateway_process import GatewayProcess
from simulators.town import write_extract

WAYS = 20_000
REQUESTS = 2_000


def tile_ranges(archive):
    """(first, last) byte of every tile in the archive, as a reader would ask for it."""
    asked = []
    with open(archive, "rb") as f:
        source = MmapSource(f)

        def get_bytes(offset, length):
            asked.append((offset, offset + length - 1))
            return source(offset, length)

        tiles = sum(1 for _ in all_tiles(get_bytes))
    return asked[-tiles:] if tiles else []


def p99_ms(url, token, ranges):
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        for first, last in ranges:  # warm
            client.get(url, headers={"Range": f"bytes={first}-{last}"}).raise_for_status()
        times = []
        for i in range(REQUESTS):
            first, last = ranges[i % len(ranges)]
            start = time.perf_counter()
            reply = client.get(url, headers={"Range": f"bytes={first}-{last}"})
            times.append((time.perf_counter() - start) * 1000)
            assert reply.status_code == 206 and len(reply.content) == last - first + 1
    return statistics.quantiles(times, n=100)[98]


def figures():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pbf = write_extract(root / "grid.osm.pbf", WAYS)
        gw_dir = root / "gateway"
        archive = gw_dir / "map" / "basemap.pmtiles"
        build_basemap(pbf, archive)
        broker = Mosquitto(root / "broker").start()
        gw = GatewayProcess(gw_dir, broker.port).start()
        try:
            p99 = p99_ms(gw.url + PATH, gw.token, tile_ranges(archive))
        finally:
            gw.stop()
            broker.stop()
        return [
            ("map.tile_p99_ms", round(p99, 2), "ms"),
            ("map.basemap_bytes_per_way", round(archive.stat().st_size / WAYS, 1), "B"),
        ]


if __name__ == "__main__":
    for name, value, unit in figures():
        print(name, value, unit)
