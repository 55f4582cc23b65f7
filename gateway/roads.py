"""The road graph: drive times from every unit to an incident in one search.

    GraphBuilder   ways (node locations, tags) in -> Graph (roadspeeds.py says how fast)
    Graph          nodes (lat/lon, int 1e-7 degrees) and the REVERSED graph in CSR form:
                   row v lists the edges u -> v that end at v, with travel time and length,
                   so one Dijkstra from the incident's node over it settles every unit's
                   drive time *to* the incident
    Graph.write    one file: header (magic, version, counts), the arrays, a CRC-32;
                   written to a temporary file and renamed over the old one
    read_graph     the same file back, every size, index and number checked: a damaged or
                   foreign file is a RoadGraphError with the reason, never a crash
    RoadMap        the gateway's current graph: loaded at start, reloaded when the file
                   changes (`siaga map import` swaps it in)

A position is snapped to the nearest graph node within SNAP_M (a grid index; a road
segment longer than MAX_EDGE_M gets nodes between, so a node is never far along the
road); the way from the position to that node counts at ACCESS_KMH. Beyond SNAP_M a unit is unreachable
by road and an incident falls back to straight-line distance.
"""

import heapq
import logging
import math
import os
import struct
import sys
import threading
import time
import zlib
from array import array

from . import roadspeeds
from .availability import distance_m
from .errors import SiagaError

log = logging.getLogger("siaga.roads")

MAGIC = b"SIAGARG\x00"
VERSION = 1
HEADER = struct.Struct("<8sIII")  # magic, version, nodes, edges
MAX_NODES = 50_000_000
MAX_EDGE_M = 250.0  # longer road segments get nodes between (GraphBuilder._pieces)
SNAP_M = 500.0  # a position further than this from every road node is off the roads
ACCESS_KMH = 15.0  # from a position to its road node (yards, car parks, a dirt track)
MAX_SECONDS = 6 * 3600.0  # the search stops past this drive time: beyond it, unreachable
CELL_E7 = 20_000  # grid index cells of 0.002 degrees (about 220 m)
E7 = 1e7


class RoadGraphError(SiagaError):
    code = "road_graph"


class GraphBuilder:
    """Drivable ways in, a Graph out. Nodes are the OSM nodes the ways use."""

    def __init__(self, speeds=None):
        self.speeds = speeds or roadspeeds.Speeds()
        self.index = {}  # OSM node id -> graph node
        self.lat, self.lon = array("i"), array("i")
        self.tail, self.head = array("i"), array("i")
        self.seconds, self.metres = array("f"), array("f")
        self.ways = 0

    def _node(self, ref, lat_e7, lon_e7):
        i = self.index.get(ref)
        if i is None:
            i = self.index[ref] = len(self.lat)
            self.lat.append(lat_e7)
            self.lon.append(lon_e7)
        return i

    def add_way(self, nodes, tags, urban=True):
        """`nodes`: (OSM id, lat e7, lon e7) in the way's order. Ways that are not
        drivable are skipped; returns whether this one was taken."""
        if not roadspeeds.drivable(tags) or len(nodes) < 2:
            return False
        mps = self.speeds.kmh(tags, urban) / 3.6
        direction = roadspeeds.oneway(tags)
        ids = [self._node(*n) for n in nodes]
        for a, b in zip(ids, ids[1:], strict=False):
            if a == b:
                continue
            m = distance_m(self.lat[a] / E7, self.lon[a] / E7, self.lat[b] / E7, self.lon[b] / E7)
            for p, q, part in self._pieces(a, b, m):
                if direction >= 0:
                    self._edge(p, q, part, mps)
                if direction <= 0:
                    self._edge(q, p, part, mps)
        self.ways += 1
        return True

    def _pieces(self, a, b, m):
        """A segment longer than MAX_EDGE_M in equal pieces, with nodes of its own between
        them, so that a position on a long straight road snaps near where it is."""
        n = math.ceil(m / MAX_EDGE_M)
        ids = [a]
        for i in range(1, n):
            f = i / n
            self.lat.append(round(self.lat[a] + (self.lat[b] - self.lat[a]) * f))
            self.lon.append(round(self.lon[a] + (self.lon[b] - self.lon[a]) * f))
            ids.append(len(self.lat) - 1)
        ids.append(b)
        return [(p, q, m / n) for p, q in zip(ids, ids[1:], strict=False)]

    def _edge(self, a, b, m, mps):
        self.tail.append(a)
        self.head.append(b)
        self.metres.append(m)
        self.seconds.append(max(m, 0.01) / mps)

    def build(self):
        """The reversed graph in CSR form: edges grouped by their head (counting sort)."""
        n, m = len(self.lat), len(self.head)
        offsets = array("I", bytes(4 * (n + 1)))
        for h in self.head:
            offsets[h + 1] += 1
        for i in range(n):
            offsets[i + 1] += offsets[i]
        fill = array("I", offsets[:n])
        order = array("I", bytes(4 * m))
        for k, h in enumerate(self.head):
            order[fill[h]] = k
            fill[h] += 1
        tails = array("i", (self.tail[k] for k in order))
        seconds = array("f", (self.seconds[k] for k in order))
        metres = array("f", (self.metres[k] for k in order))
        return Graph(self.lat, self.lon, offsets, tails, seconds, metres)


class Graph:
    """Nodes and the reversed CSR adjacency. `tails[offsets[v]:offsets[v+1]]` are the
    nodes with an edge to v, `seconds` and `metres` that edge's travel time and length."""

    def __init__(self, lat, lon, offsets, tails, seconds, metres):
        self.lat, self.lon = lat, lon
        self.offsets, self.tails, self.seconds, self.metres = offsets, tails, seconds, metres
        self._grid = None

    @property
    def nodes(self):
        return len(self.lat)

    @property
    def edges(self):
        return len(self.tails)

    def bounds(self):
        """(south, west, north, east) in degrees, or None for an empty graph."""
        if not self.nodes:
            return None
        return (min(self.lat) / E7, min(self.lon) / E7, max(self.lat) / E7, max(self.lon) / E7)

    # the file
    def to_bytes(self):
        parts = [HEADER.pack(MAGIC, VERSION, self.nodes, self.edges)]
        for arr in (self.lat, self.lon, self.offsets, self.tails, self.seconds, self.metres):
            if sys.byteorder != "little":
                arr = array(arr.typecode, arr)
                arr.byteswap()
            parts.append(arr.tobytes())
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body))

    def write(self, path):
        """Atomically: a temporary file beside `path`, flushed to disk, renamed over it."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(self.to_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    # snapping a position to the road
    def _index(self):
        if self._grid is None:
            grid = {}
            for i, (la, lo) in enumerate(zip(self.lat, self.lon, strict=True)):
                grid.setdefault((la // CELL_E7, lo // CELL_E7), []).append(i)
            self._grid = grid
        return self._grid

    def snap(self, lat, lon, max_m=SNAP_M):
        """(nearest node, metres to it), or None when no node is within max_m. Rings of
        grid cells outward, until a ring cannot hold anything nearer."""
        grid, lats, lons = self._index(), self.lat, self.lon
        y, x = lat * E7, lon * E7
        cy, cx = int(y // CELL_E7), int(x // CELL_E7)
        k = math.cos(math.radians(lat))  # an east-west 1e-7 degree, in north-south ones
        m_per_e7 = 111_320 / E7
        reach = int(max_m / (m_per_e7 * CELL_E7 * max(k, 0.2))) + 1
        best, best_d2 = None, (max_m / m_per_e7) ** 2
        for r in range(reach + 1):
            if best is not None and ((r - 1) * CELL_E7 * min(k, 1.0)) ** 2 > best_d2:
                break  # every cell of this ring is farther than what was found
            for cell in _ring(cy, cx, r):
                for i in grid.get(cell, ()):
                    d2 = (lats[i] - y) ** 2 + ((lons[i] - x) * k) ** 2
                    if d2 <= best_d2:
                        best, best_d2 = i, d2
        if best is None:
            return None
        return best, distance_m(lat, lon, lats[best] / E7, lons[best] / E7)

    # the search
    def search(self, start, targets, max_seconds=MAX_SECONDS):
        """Dijkstra from `start` over the reversed graph, stopping once every node of
        `targets` is settled (or past max_seconds). Returns ({target reached: seconds},
        via): via[u] is (the edge u leaves by toward `start`, the node it leads to); the
        start and the nodes not reached have none. Only the nodes the search touches take
        memory, not the whole graph."""
        offsets, tails, seconds = self.offsets, self.tails, self.seconds
        inf = math.inf
        dist, via = {start: 0.0}, {}
        heap = [(0.0, start)]
        remaining, reached = set(targets), {}
        pop, push = heapq.heappop, heapq.heappush
        while heap and remaining:
            t, v = pop(heap)
            if t > dist.get(v, inf):
                continue
            if t > max_seconds:
                break
            if v in remaining:
                remaining.discard(v)
                reached[v] = t
            for k in range(offsets[v], offsets[v + 1]):
                u = tails[k]
                tu = t + seconds[k]
                if tu < dist.get(u, inf):
                    dist[u] = tu
                    via[u] = (k, v)
                    push(heap, (tu, u))
        return reached, via

    def walk(self, node, via):
        """The nodes from `node` to the search's start, and the metres of that way."""
        nodes, metres = [node], 0.0
        while node in via:
            k, node = via[node]
            metres += self.metres[k]
            nodes.append(node)
        return nodes, metres

    def latlon(self, node):
        return [self.lat[node] / E7, self.lon[node] / E7]


def _ring(cy, cx, r):
    """The grid cells at Chebyshev distance r from (cy, cx)."""
    if r == 0:
        yield (cy, cx)
        return
    for d in range(-r, r + 1):
        yield (cy - r, cx + d)
        yield (cy + r, cx + d)
    for d in range(-r + 1, r):
        yield (cy + d, cx - r)
        yield (cy + d, cx + r)


SEARCHES = threading.BoundedSemaphore(2)  # searches at once (the rest wait): pure Python, CPU-bound


def drive_times(graph, incident, units, routes=(), max_snap_m=SNAP_M):
    """Drive from each unit to the incident. `incident`: (lat, lon); `units`: {id: (lat,
    lon)}; `routes`: the ids whose route geometry to return. None when the incident is
    off the roads (farther than max_snap_m from every node); else {id: None (off the
    roads, or unreachable) or {"seconds", "road_m"[, "route": [[lat, lon], ...]]}}."""
    snapped = graph.snap(*incident, max_snap_m)
    if snapped is None:
        return None
    goal, goal_m = snapped
    starts = {uid: graph.snap(*pos, max_snap_m) for uid, pos in units.items()}
    with SEARCHES:
        reached, via = graph.search(goal, {s[0] for s in starts.values() if s})
    access = ACCESS_KMH / 3.6
    out = {}
    for uid, start in starts.items():
        if start is None or start[0] not in reached:
            out[uid] = None
            continue
        node, unit_m = start
        nodes, m = graph.walk(node, via)
        out[uid] = {"seconds": reached[node] + (unit_m + goal_m) / access, "road_m": m + unit_m + goal_m}
        if uid in routes:
            out[uid]["route"] = [list(units[uid]), *map(graph.latlon, nodes), list(incident)]
    return out


def read_graph(path):
    """The graph in the file at `path`, checked; RoadGraphError with the reason if not."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RoadGraphError(f"road graph {path}: {e.strerror}") from None
    try:
        return graph_from_bytes(data)
    except RoadGraphError as e:
        raise RoadGraphError(
            f"road graph {path}: {e.message}; import the map again (siaga map import)"
        ) from None


def graph_from_bytes(data):
    if len(data) < HEADER.size + 4 or data[:8] != MAGIC:
        raise RoadGraphError("not a Siaga road graph")
    _, version, n, m = HEADER.unpack_from(data)
    if version != VERSION:
        raise RoadGraphError(f"format version {version}, this gateway reads version {VERSION}")
    if n > MAX_NODES or m > 8 * MAX_NODES:
        raise RoadGraphError(f"{n} nodes and {m} edges is more than this gateway takes")
    if len(data) != HEADER.size + 4 * (3 * n + 1 + 3 * m) + 4:
        raise RoadGraphError("truncated or padded (its size does not match its counts)")
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(memoryview(data)[:-4]) != crc:
        raise RoadGraphError("damaged (checksum does not match)")
    arrays, at = [], HEADER.size
    for code, count in (("i", n), ("i", n), ("I", n + 1), ("i", m), ("f", m), ("f", m)):
        arr = array(code, data[at : at + 4 * count])
        if sys.byteorder != "little":
            arr.byteswap()
        arrays.append(arr)
        at += 4 * count
    graph = Graph(*arrays)
    _check(graph)
    return graph


def _check(g):
    """What a checksum cannot vouch for: a file made by something else with a good CRC."""
    n, m = g.nodes, g.edges
    if n and not (-90 * E7 <= min(g.lat) and max(g.lat) <= 90 * E7):
        raise RoadGraphError("a node's latitude is out of range")
    if n and not (-180 * E7 <= min(g.lon) and max(g.lon) <= 180 * E7):
        raise RoadGraphError("a node's longitude is out of range")
    off = g.offsets
    if off[0] != 0 or off[n] != m or any(a > b for a, b in zip(off, off[1:], strict=False)):
        raise RoadGraphError("edge offsets out of order")
    if m and (min(g.tails) < 0 or max(g.tails) >= n):
        raise RoadGraphError("an edge leads to a node that does not exist")
    for name, values in (("travel time", g.seconds), ("length", g.metres)):
        if m and not (min(values) >= 0 and math.isfinite(math.fsum(values))):
            raise RoadGraphError(f"an edge's {name} is negative or not a number")


class RoadMap:
    """The gateway's road graph at `path`: read at first use and again whenever the file
    changes (checked at most every `check_every` seconds). `current()` is (graph, None),
    or (None, why): no map imported, or the file is unreadable (the reason)."""

    def __init__(self, path, check_every=2.0, clock=time.monotonic):
        self.path, self.check_every, self.clock = path, check_every, clock
        self._lock = threading.Lock()
        self._graph, self._why, self._stamp, self._checked = None, "no road map imported", None, None
        self._loading = False  # one thread reads a changed file; the others use the old map

    def current(self):
        with self._lock:
            now = self.clock()
            due = not self._loading and (self._checked is None or now - self._checked >= self.check_every)
            if due:
                self._checked, self._loading = now, True
            state = self._graph, self._why
        if not due:
            return state
        try:  # read outside the lock: meanwhile the others are answered from the old map
            state = self._refresh(state)
        finally:
            with self._lock:
                self._graph, self._why = state
                self._loading = False
        return state

    def _refresh(self, state):
        """(graph, why) for the file as it is now; `state` when it has not changed."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp = None
            return None, "no road map imported"
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return state
        self._stamp = stamp
        try:
            graph = read_graph(self.path)
        except RoadGraphError as e:
            log.warning("%s: nearest units by straight line until it is imported again", e.message)
            return None, e.message
        graph._index()  # built now, not by the first request that snaps
        log.info("road map %s: %d nodes, %d edges", self.path, graph.nodes, graph.edges)
        return graph, None
