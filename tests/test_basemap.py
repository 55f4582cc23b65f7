"""The offline basemap: built by tilemaker and pmtiles from the demo town's OSM file
(simulators/town.py), served by a real gateway process with byte ranges behind its
login, replaced by a second import while it runs, and drawn by protomaps-leaflet in a
real headless Chromium."""

import base64
import gzip
import json
import math
import os
import shutil

import httpx
import pytest
from conftest import log_in
from playwright.sync_api import expect, sync_playwright

from gateway.api.basemap import header
from provisioning.basemap import BasemapError, build_basemap, describe
from simulators.gateway_process import GatewayProcess, wait_until
from simulators.geo import to_latlon
from simulators.town import RIVER_Y, write_extract, write_town

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "rahasia-112"
PATH = "/api/v1/map/basemap.pmtiles"
WATER = (0xB9, 0xD3, 0xE6)  # gateway/web/basemap.js COLOURS.water


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    """The demo town's archive, and the facts build_basemap returned."""
    folder = tmp_path_factory.mktemp("town")
    steps = []
    report = lambda fraction, stage: steps.append((fraction, stage))  # noqa: E731
    facts = build_basemap(write_town(folder / "town.osm.pbf"), folder / "town.pmtiles", report)
    return folder / "town.pmtiles", facts, steps


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Another archive: a plain grid town, for the re-import."""
    folder = tmp_path_factory.mktemp("grid")
    build_basemap(write_extract(folder / "grid.osm.pbf", 300), folder / "grid.pmtiles")
    return folder / "grid.pmtiles"


def install(data_dir, archive, demo=True):
    """What `siaga map import` leaves: the archive and meta.json, the archive renamed
    into place (atomic)."""
    folder = data_dir / "map"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"source": "town.osm.pbf" if demo else "region.osm.pbf", "demo": demo}
    (folder / "meta.json").write_text(json.dumps(meta))
    shutil.copyfile(archive, folder / "incoming.pmtiles")
    os.replace(folder / "incoming.pmtiles", folder / "basemap.pmtiles")


@pytest.fixture
def gateway(broker, tmp_path):
    gw = GatewayProcess(tmp_path / "gateway", broker.port).start()
    yield gw
    gw.stop()


def get(gw, path=PATH, token=True, **headers):
    if token:
        headers.update(gw.headers)
    return httpx.get(gw.url + path, headers=headers, timeout=10)


# ---- the build ------------------------------------------------------------------------


def test_the_demo_town_makes_an_archive_with_every_layer(town):
    path, facts, steps = town
    assert facts["layers"] == ["water", "waterways", "roads", "buildings", "places"]
    assert (facts["min_zoom"], facts["max_zoom"]) == (8, 15)
    west, south, east, north = facts["bounds"]
    assert west < 113.9136 < east and south < -2.2096 < north  # around Palangka Raya
    assert facts["tiles"] > 0 and facts["bytes"] == path.stat().st_size
    assert describe(path)["bounds"] == facts["bounds"]
    assert header(path) == {k: facts[k] for k in ("min_zoom", "max_zoom", "bounds")}
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {stage for _, stage in steps} == {"read", "tiles", "convert"}


def tile_of(lat, lon, z):
    """The XYZ tile (web mercator) that holds a point."""
    n = 2**z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return z, int((lon + 180) / 360 * n), int(y)


def test_a_tile_of_the_town_holds_its_streets_and_river_by_name(town):
    from pmtiles.reader import MmapSource, Reader

    path, _, _ = town
    with open(path, "rb") as f:
        tile = Reader(MmapSource(f)).get(*tile_of(*to_latlon(0, RIVER_Y), 14))
    data = gzip.decompress(tile)
    for name in (b"Sungai Kahayan", b"Jalan Dr. Murjani", b"roads", b"water", b"buildings"):
        assert name in data


def test_a_file_that_is_not_osm_is_refused_clearly(tmp_path):
    bad = tmp_path / "region.osm.pbf"
    bad.write_bytes(b"<html>not a map</html>" * 50)
    with pytest.raises(BasemapError, match="not an OSM extract"):
        build_basemap(bad, tmp_path / "out.pmtiles")
    assert not (tmp_path / "out.pmtiles").exists()


def test_without_tilemaker_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BasemapError, match="make tilemaker"):
        build_basemap(write_town(tmp_path / "town.osm.pbf"), tmp_path / "out.pmtiles")


def test_a_failing_tilemaker_is_reported_with_its_output(tmp_path, monkeypatch):
    fake = tmp_path / "tilemaker"
    fake.write_text("#!/bin/sh\necho 'Lua error: something broke' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(BasemapError, match=r"tilemaker failed \(exit 3\)[\s\S]*something broke"):
        build_basemap(write_town(tmp_path / "town.osm.pbf"), tmp_path / "out.pmtiles")


# ---- served over HTTP -------------------------------------------------------------------


def test_no_basemap_is_a_404_that_says_how_to_import_one(gateway):
    reply = get(gateway)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"
    assert "siaga map import" in reply.json()["error"]["message"]
    assert gateway.get("/api/v1/map-config")[1]["basemap"] is None


def test_the_archive_is_served_by_ranges_behind_the_login(gateway, town):
    path, _, _ = town
    install(gateway.data_dir, path)
    whole = path.read_bytes()
    size = len(whole)

    assert get(gateway, token=False).status_code == 401
    assert get(gateway, token=False, Range="bytes=0-6").status_code == 401

    full = get(gateway)
    assert full.status_code == 200 and full.content == whole
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["cache-control"] == "private, no-cache"
    tag = full.headers["etag"]

    for asked, first, last in (
        ("bytes=0-126", 0, 126),  # the header, as a PMTiles reader asks first
        ("bytes=100-", 100, size - 1),
        ("bytes=-50", size - 50, size - 1),
        (f"bytes=10-{size + 1000}", 10, size - 1),  # past the end: up to the end
    ):
        reply = get(gateway, Range=asked)
        assert reply.status_code == 206, asked
        assert reply.content == whole[first : last + 1], asked
        assert reply.headers["content-range"] == f"bytes {first}-{last}/{size}", asked
        assert reply.headers["etag"] == tag

    bad = (f"bytes={size}-", "bytes=9-2", "bytes=0-1,5-6", "items=0-1", "bytes=-0", "bytes=-", "bytes=x-y")
    bad += ("bytes=" + "1" * 300 + "-",)  # longer than any archive's offsets
    for asked in bad:
        reply = get(gateway, Range=asked)
        assert reply.status_code == 416, asked
        assert reply.headers["content-range"] == f"bytes */{size}", asked
        assert reply.json()["error"]["code"] == "range_not_satisfiable", asked

    assert get(gateway, **{"If-None-Match": tag}).status_code == 304
    changed = get(gateway, Range="bytes=0-6", **{"If-Range": '"another"'})
    assert changed.status_code == 200 and changed.content == whole  # not the ETag it had: all of it
    assert get(gateway, path=PATH + "?z=1").status_code == 400  # no query parameters


def test_a_second_import_is_served_at_once_with_a_new_etag(gateway, town, grid):
    path, _, _ = town
    install(gateway.data_dir, path)
    before = get(gateway, Range="bytes=0-126")
    assert before.status_code == 206
    assert gateway.get("/api/v1/map-config")[1]["basemap"]["demo"] is True

    install(gateway.data_dir, grid, demo=False)
    after = get(gateway, Range="bytes=0-126")
    assert after.status_code == 206 and after.headers["etag"] != before.headers["etag"]
    assert get(gateway).content == grid.read_bytes()
    assert get(gateway, **{"If-None-Match": before.headers["etag"]}).status_code == 200
    config = gateway.get("/api/v1/map-config")[1]["basemap"]
    assert config["demo"] is False and "OpenStreetMap" in config["attribution"]
    assert config["url"] == PATH and config["max_zoom"] == 15


# ---- drawn in the browser ----------------------------------------------------------------

COLOURS_JS = """async (b64) => {
  const img = new Image();
  img.src = "data:image/png;base64," + b64;
  await img.decode();
  const c = document.createElement("canvas");
  c.width = img.width;
  c.height = img.height;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const counts = {};
  for (let i = 0; i < d.length; i += 4) {
    const k = [d[i], d[i + 1], d[i + 2]].join(",");
    counts[k] = (counts[k] || 0) + 1;
  }
  return counts;
}"""


def colours(page):
    """{(r, g, b): pixels} of the map as the screen shows it (a screenshot, counted)."""
    shot = base64.b64encode(page.locator("#map").screenshot()).decode()
    counts = page.evaluate(COLOURS_JS, shot)
    return {tuple(int(v) for v in k.split(",")): n for k, n in counts.items()}


def near(counts, colour, tolerance=4):
    return sum(
        n for c, n in counts.items() if all(abs(a - b) <= tolerance for a, b in zip(c, colour, strict=True))
    )


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


def open_page(browser, gw):
    user = {"name": "peta", "role": "viewer", "password": PASSWORD}
    status, body = gw.request("POST", "/api/v1/users", user)
    assert status in (201, 409), body
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    page = ctx.new_page()
    log_in(page, gw.url, "peta", PASSWORD)
    return ctx, page


def test_the_page_draws_the_imported_demo_town_and_says_it_is_a_demo(browser, gateway, town):
    ctx, page = open_page(browser, gateway)
    try:  # nothing imported, no online source: the page says so, on a plain background
        expect(page.locator("#tiles-down")).to_be_visible()
        assert page.evaluate("window.__siaga.basemap") == "none"
        blank = colours(page)
        assert near(blank, WATER) < 50  # a few of the legend's edge pixels at most
    finally:
        ctx.close()

    install(gateway.data_dir, town[0])
    ctx, page = open_page(browser, gateway)
    try:
        assert page.evaluate("window.__siaga.basemap") == "offline"
        wait_until(lambda: near(colours(page), WATER) > 300, what="the river drawn from the archive")
        drawn = colours(page)
        changed = sum(abs(drawn.get(c, 0) - blank.get(c, 0)) for c in set(drawn) | set(blank)) / 2
        assert changed > 0.5 * sum(drawn.values())  # most of the map is no longer the blank background
        expect(page.locator("#tiles-down")).to_be_hidden()
        expect(page.locator("#demo-map")).to_have_text("Peta demo: kota sintetis, bukan jalan sebenarnya")
        credit = page.locator(".leaflet-control-attribution")
        expect(credit).to_contain_text("Peta demo Siaga")
        expect(credit).not_to_contain_text("OpenStreetMap contributors")
        page.click("#lang")
        expect(page.locator("#demo-map")).to_have_text("Demo map: a synthetic town, not real streets")
        expect(credit).to_contain_text("Siaga demo map")
    finally:
        ctx.close()


def test_an_online_source_is_offered_beside_the_archive_which_comes_first(browser, broker, tmp_path, town):
    from provisioning.processes import free_port

    online = f"http://127.0.0.1:{free_port()}/{{z}}/{{x}}/{{y}}.png"  # nothing listens there
    gw = GatewayProcess(tmp_path / "gateway", broker.port, extra=["--tiles-url", online]).start()
    install(gw.data_dir, town[0], demo=False)
    ctx, page = open_page(browser, gw)
    try:
        assert page.evaluate("window.__siaga.basemap") == "offline"
        switch = page.locator(".leaflet-control-layers-base label")
        expect(switch).to_have_text(["Peta offline", "Peta online"])
        credit = page.locator(".leaflet-control-attribution")
        expect(credit).to_contain_text("OpenStreetMap contributors")  # an OSM extract, credited
        expect(page.locator("#demo-map")).to_be_hidden()
        wait_until(lambda: near(colours(page), WATER) > 300, what="the river drawn from the archive")

        switch.nth(1).click()  # the online source, unreachable here: the page says so
        assert page.evaluate("window.__siaga.basemap") == "online"
        expect(page.locator("#tiles-down")).to_be_visible()
        switch.nth(0).click()  # and back
        expect(page.locator("#tiles-down")).to_be_hidden()
        wait_until(lambda: near(colours(page), WATER) > 300, what="the river drawn again")
    finally:
        ctx.close()
        gw.stop()


def test_protomaps_leaflet_is_served_from_node_modules_like_leaflet(gateway):
    reply = get(gateway, path="/vendor/protomaps-leaflet/protomaps-leaflet.js", token=False)
    assert reply.status_code == 200 and "protomapsL" in reply.text[:200]


def test_water_mapped_as_a_multipolygon_is_drawn_and_a_big_extract_is_built_on_disk(tmp_path, monkeypatch):
    """Rivers in OSM are often multipolygon relations of several ways; and a province's
    extract keeps tilemaker's store in a file (STORE_ABOVE, here for any size)."""
    import osmium
    from osmium.osm.mutable import Node, Relation, Way
    from pmtiles.reader import MmapSource, all_tiles

    from provisioning import basemap

    pbf = tmp_path / "river.osm.pbf"
    writer = osmium.SimpleWriter(str(pbf))
    corners = [(113.90, -2.21), (113.93, -2.21), (113.93, -2.20), (113.90, -2.20)]
    for i, lonlat in enumerate(corners, 1):
        writer.add_node(Node(id=i, location=lonlat, version=1))
    writer.add_way(Way(id=1, nodes=[1, 2, 3], version=1))
    writer.add_way(Way(id=2, nodes=[3, 4, 1], version=1))
    ring = [("w", 1, "outer"), ("w", 2, "outer")]
    tags = {"type": "multipolygon", "natural": "water", "water": "river", "name": "Sungai Rungan"}
    writer.add_relation(Relation(id=1, members=ring, tags=tags, version=1))
    writer.close()

    monkeypatch.setattr(basemap, "STORE_ABOVE", 0)
    out = tmp_path / "river.pmtiles"
    build_basemap(pbf, out)
    with open(out, "rb") as f:
        named = [zxy for zxy, tile in all_tiles(MmapSource(f)) if b"Sungai Rungan" in gzip.decompress(tile)]
    assert {z for z, _, _ in named} == set(range(8, 16))  # the river at every zoom
