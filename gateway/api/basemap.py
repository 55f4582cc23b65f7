"""The offline basemap over HTTP: the PMTiles archive that `siaga map import` leaves in
`<data>/map/basemap.pmtiles`, served as a file with byte ranges (the page's
protomaps-leaflet reads its header, directories and tiles by `Range` requests), behind
the same login as the page (logins.ROUTES: `view`).

- `Range: bytes=a-b`, `bytes=a-`, `bytes=-n`: 206 with Content-Range; one range a
  request; a range that is malformed, several, or past the end: 416 with
  `Content-Range: bytes */size`. No Range: 200, the whole file.
- ETag from the file's identity (inode, size, modification time), `Cache-Control:
  private, no-cache`: the browser keeps what it read and asks again with
  If-None-Match (304 while the file is the same). `If-Range` with another ETag: the
  whole file (200), as HTTP says.
- Each request opens the file and reads from what it opened: an import renames a new
  archive over the old one (atomic), a request in flight finishes on the old one, the
  next gets the new one, and its ETag differs, so the page's PMTiles reader starts over.
- No archive: 404 saying how to import one.

Why the archive and not decoded tiles z/x/y: docs/map.md "The offline basemap".
"""

import json
import os
import re
import struct
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ..errors import NotFound, RangeNotSatisfiable

PATH = "/api/v1/map/basemap.pmtiles"
RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
SMALL = 256 * 1024  # a range up to this is read at once; a bigger one is streamed
CHUNK = 64 * 1024
CACHE = "private, no-cache"
OCTETS = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
RESPONSES = {
    200: {"description": "the whole archive", "content": OCTETS},
    206: {"description": "the byte range asked for", "content": OCTETS},
    304: {"description": "unchanged since the ETag sent in If-None-Match"},
    404: {"description": "no basemap is imported (`siaga map import`)", "content": ERROR},
    416: {"description": "a range that is malformed, several, or past the end", "content": ERROR},
}


def folder(data_dir):
    return Path(data_dir) / "map"


def archive(data_dir):
    return folder(data_dir) / "basemap.pmtiles"


def meta(data_dir):
    """What the import says of the archive (meta.json beside it: source, demo), or {}."""
    try:
        value = json.loads((folder(data_dir) / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


OSM_CREDIT = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
HEADER = struct.Struct("<7sB92xBBiiii")  # PMTiles v3: magic, version, ..., zooms, bounds (e7)


def header(path):
    """The archive's zooms and bounds from its 127-byte header; None if it is not a
    PMTiles v3 archive."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER.size)
    except OSError:
        return None
    if len(raw) < HEADER.size:
        return None
    magic, version, min_zoom, max_zoom, *e7 = HEADER.unpack(raw)
    if magic != b"PMTiles" or version != 3:
        return None
    return {"min_zoom": min_zoom, "max_zoom": max_zoom, "bounds": [v / 1e7 for v in e7]}


def described(data_dir):
    """The basemap as the page needs it (/api/v1/map-config), or None when none is
    imported: where to read it, its zooms and bounds, whether it is the demo's
    synthetic town, and whom it credits (a demo map credits no one: it is not OSM's)."""
    found = header(archive(data_dir))
    if found is None:
        return None
    about = meta(data_dir)
    demo = about.get("demo") is True
    credit = "" if demo else str(about.get("attribution") or OSM_CREDIT)[:500]
    return dict(found, url=PATH, demo=demo, source=str(about.get("source", ""))[:200], attribution=credit)


def etag(st):
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def _matches(if_none_match, tag):
    """Whether an If-None-Match header names this ETag (or is `*`)."""
    if if_none_match is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match[:1000].split(",")}
    return tag in tags or "*" in tags


def byte_range(header, size):
    """(first, last) byte of a Range header on a file of `size` bytes; None: no Range.
    RangeNotSatisfiable for anything this does not serve."""
    if header is None:
        return None
    found = RANGE.fullmatch(header.strip()) if len(header) <= 200 else None
    if not found or found.groups() == ("", ""):
        raise RangeNotSatisfiable("Range must be one range, bytes=FIRST-LAST, FIRST- or -SUFFIX", size=size)
    first, last = found.groups()
    if first == "":  # the last `last` bytes
        if int(last) == 0:
            raise RangeNotSatisfiable("a suffix range of 0 bytes", size=size)
        return max(0, size - int(last)), size - 1
    first = int(first)
    last = size - 1 if last == "" else min(int(last), size - 1)
    if first >= size or first > last:
        why = f"range {header.strip()[:60]} is outside the archive's {size} bytes"
        raise RangeNotSatisfiable(why, size=size)
    return first, last


def _read(f, first, last):
    """The bytes first..last of the open file `f`, in chunks; closes `f` at the end."""
    try:
        f.seek(first)
        left = last - first + 1
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
    finally:
        f.close()


def _answer(f, status, first, last, headers):
    headers = dict(headers, **{"Content-Length": str(last - first + 1)})
    if last - first + 1 <= SMALL:
        try:
            f.seek(first)
            body = f.read(last - first + 1)
        finally:
            f.close()
        return Response(body, status, headers, media_type="application/octet-stream")
    return StreamingResponse(_read(f, first, last), status, headers, media_type="application/octet-stream")


def router(gw):
    r = APIRouter()
    data_dir = gw.settings["data"]

    @r.get(PATH, response_class=Response, responses=RESPONSES)
    def basemap(request: Request):
        """The offline basemap: a PMTiles archive of vector tiles, read by byte ranges.
        One range a request (`Range: bytes=FIRST-LAST`, `FIRST-` or `-SUFFIX`): 206;
        none: the whole file. Conditional on its ETag (If-None-Match, If-Range). HTTP's
        own headers, so not parameters here: a Range the archive cannot serve is 416,
        whatever its syntax."""
        try:
            f = open(archive(data_dir), "rb")
        except FileNotFoundError:
            raise NotFound("no basemap is imported: run `siaga map import REGION.osm.pbf`") from None
        st = os.fstat(f.fileno())
        tag = etag(st)
        headers = {"ETag": tag, "Cache-Control": CACHE, "Accept-Ranges": "bytes"}
        try:
            if _matches(request.headers.get("if-none-match"), tag):
                f.close()
                return Response(status_code=304, headers=headers)
            if_range = request.headers.get("if-range")
            asked = request.headers.get("range")
            span = byte_range(asked, st.st_size) if if_range in (None, tag) else None
        except BaseException:
            f.close()
            raise
        if span is None:
            return _answer(f, 200, 0, st.st_size - 1, headers)
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{st.st_size}"
        return _answer(f, 206, span[0], span[1], headers)

    return r
