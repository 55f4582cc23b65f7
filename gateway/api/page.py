"""The dispatcher's map page: static files from gateway/web/ at `/`, Leaflet and
protomaps-leaflet from the repository's node_modules (installed by `make venv` from
package-lock.json) at /vendor/leaflet/ and /vendor/protomaps-leaflet/, and the map's
settings at /api/v1/map-config. No CDN."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from .. import centre
from . import basemap

GATEWAY = Path(__file__).resolve().parent.parent
WEB = GATEWAY / "web"
NODE_MODULES = GATEWAY.parent / "node_modules"
LEAFLET = NODE_MODULES / "leaflet" / "dist"
PROTOMAPS = NODE_MODULES / "protomaps-leaflet" / "dist"


def _vendor():
    """Served at /vendor/NAME/: each library's folder, and the file that says it is there."""
    return {"leaflet": (LEAFLET, "leaflet.js"), "protomaps-leaflet": (PROTOMAPS, "protomaps-leaflet.js")}


MISSING = """<!doctype html><meta charset="utf-8"><title>Siaga: {name} missing</title>
<h1>{name} is missing</h1>
<p>The map's library is not installed in <code>{path}</code>: run <code>make venv</code>
(it runs <code>npm ci --omit=dev</code>) in the repository, then reload.</p>"""


def _missing():
    """The first browser library that is not installed, as the page that says so."""
    for name, (folder, marker) in _vendor().items():
        if not (folder / marker).exists():
            return HTMLResponse(MISSING.format(name=name, path=folder), status_code=503)
    return None


def _vendored(name, path):
    folder = _vendor()[name][0]
    try:
        file = (folder / path).resolve()
        found = folder.resolve() in file.parents and file.is_file()
    except (ValueError, OSError):  # a NUL byte, a name too long: no such file
        found = False
    if not found:
        return HTMLResponse("not found", status_code=404)
    return FileResponse(file)


def _statuses(scheme):
    """The scheme's statuses for the page: labels, and which a dispatcher may set."""
    out = []
    for key in sorted(scheme.by_key):
        s = scheme.by_key[key]
        out.append(dict(s.as_json(), availability=s.availability, settable=s.settable))
    return out


def gateway_list(text):
    """The `gateways` setting as the page's list: each address once, in order, without a
    trailing /; [] when unset. Only http:// and https:// addresses: the page goes there."""
    out = []
    for part in (text or "").split(","):
        address = part.strip().rstrip("/")
        if address.startswith(("http://", "https://")) and address not in out:
            out.append(address)
    return out


def mount(app, gw):
    """Serve the page, its static files and the vendored libraries on `app`."""
    r = APIRouter()

    @r.get("/", include_in_schema=False)
    def index():
        missing = _missing()
        if missing:
            return missing
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    @r.get("/api/v1/map-config")
    def map_config():
        """Where the map's tiles come from: `basemap`, the imported offline archive
        (null when none is: `siaga map import`), and `tiles_url`, an online or the
        centre's own XYZ source (a gateway setting, "" when unset), its attribution; the
        status schemes' labels by name (a unit's `status_scheme` names its own;
        `statuses` is the default scheme's, as before there were others), the kinds of
        unit and incident, the zone times are shown in, and `gateways`: every gateway of
        the centre (the setting, [] when unset), where the page goes when its own stops
        answering (docs/high-availability.md)."""
        schemes = {name: _statuses(scheme) for name, scheme in gw.pipeline.schemes.items()}
        return {
            "basemap": basemap.described(gw.settings["data"]),
            "tiles_url": gw.settings.get("tiles_url", ""),
            "tiles_attribution": gw.settings.get("tiles_attribution", ""),
            "statuses": schemes["default"],
            "schemes": schemes,
            "unit_kinds": list(centre.UNIT_KINDS),
            "incident_kinds": list(centre.INCIDENT_KINDS),
            "zone": {"name": centre.ZONE_NAME, "offset_s": centre.ZONE_OFFSET_S},
            "gateways": gateway_list(gw.settings.get("gateways", "")),
        }

    @r.get("/vendor/leaflet/{path:path}", include_in_schema=False)
    def leaflet(path: str):
        return _missing() or _vendored("leaflet", path)

    @r.get("/vendor/protomaps-leaflet/{path:path}", include_in_schema=False)
    def protomaps_leaflet(path: str):
        return _missing() or _vendored("protomaps-leaflet", path)

    app.include_router(r)
    app.mount("/web", StaticFiles(directory=WEB), name="web")
