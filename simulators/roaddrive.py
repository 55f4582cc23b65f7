"""Driving on an imported road map: the demo fleet's units follow the roads of the map in
the data folder (the demo town of `simulators.town`, or the centre's own extract).

    RoadMover   the vehicle of `route.Mover` (acceleration, braking before turns, red
                lights, 1 Hz true positions), routed over the road graph of
                `gateway.roads` with the graph's own search: one-way streets only their
                way, rivers only on bridges. A destination is the road node nearest to
                it (inside the map); the way there is interpolated along the route's
                geometry at the vehicle's speed.
    road_drive  the reference drive of `route.city_drive`, on the roads: trips between
                random places with stops, deterministic for a seed.
    load_graph  the road graph imported into a data folder, or None.
"""

import math
import random

from gateway.roads import E7, RoadGraphError, read_graph

from .geo import to_latlon, to_xy
from .route import BRAKE, TURN_SPEED, Mover

STRAIGHT_DEG = 25.0  # a change of heading smaller than this at a node is no turn
RED_LIGHT = 0.2  # the chance of a red light at a turn
DEST_SNAP_M = 3000.0  # a destination (moved inside the map first) this near a road node
START_SNAP_M = 500.0  # a vehicle starting farther than this from every road stays put


def load_graph(data_dir):
    """The road graph of `<data_dir>/map` (siaga map import), or None when there is none
    or it cannot be read."""
    try:
        return read_graph(data_dir / "map" / "roads.graph")
    except RoadGraphError:
        return None


class RoadMover(Mover):
    """A Mover on `graph`. `path` holds the points still ahead as (x, y, node, speed to
    pass it at, a turn there); the vehicle starts on the road nearest to (x, y)."""

    def __init__(self, graph, x, y, t, rng=None, cruise=14.0):
        super().__init__(x, y, t, rng, cruise)
        self.graph = graph
        self.bounds = graph.bounds()  # south, west, north, east: a whole pass over the nodes
        self.node = None  # the road node the vehicle is at, or drives to first
        self._put_on_road(x, y)

    # where the roads are
    def node_xy(self, node):
        return to_xy(self.graph.lat[node] / E7, self.graph.lon[node] / E7)

    def _put_on_road(self, x, y):
        """At the nearest point of a road edge that ends at the nearest node (so the way
        on along that edge, to the node, is a way the road may be driven)."""
        snapped = self.graph.snap(*to_latlon(x, y), START_SNAP_M)
        if snapped is None:
            return  # off the map: the vehicle stays where it is
        node = snapped[0]
        best = (math.hypot(*_minus(self.node_xy(node), (x, y))), self.node_xy(node))
        g = self.graph
        for k in range(g.offsets[node], g.offsets[node + 1]):
            p = _project((x, y), self.node_xy(g.tails[k]), self.node_xy(node))
            best = min(best, (math.hypot(*_minus(p, (x, y))), p))
        self.node = node
        self.x, self.y = best[1]

    def _goal(self, x, y):
        """The road node for a destination: the nearest to it once it is inside the map."""
        south, west, north, east = self.bounds
        lat, lon = to_latlon(x, y)
        snapped = self.graph.snap(min(max(lat, south), north), min(max(lon, west), east), DEST_SNAP_M)
        return snapped and snapped[0]

    # routing
    def route(self, start, goal):
        """The nodes from `start` to `goal` by the fastest way (the graph's search, from the
        goal over the reversed graph), or None when the roads do not lead there."""
        reached, via = self.graph.search(goal, {start})
        if start not in reached:
            return None
        return self.graph.walk(start, via)[0]

    def drive_to(self, x, y, cruise=None):
        """Drive to the road node nearest to (x, y); on the way to a point already, the
        vehicle gets there first. Off the map, or no way there: it stays."""
        self.cruise = cruise or self.cruise
        ahead = self.path[:1]  # the point it is driving to now (a node)
        start = ahead[0][2] if ahead else self.node
        goal = None if start is None else self._goal(x, y)
        nodes = None if goal is None else self.route(start, goal)
        if nodes is None:
            return
        points = [(*self.node_xy(n), n) for n in nodes]
        if ahead or math.hypot(self.x - points[0][0], self.y - points[0][1]) < 0.5:
            points = points[1:]  # already there, or on the way there
        self.path = self._plan((self.x, self.y), [p[:3] for p in ahead] + points)

    def _plan(self, here, points):
        """Each point with the speed to pass it at: the cruise on through a straight node,
        TURN_SPEED through a turn, 0 at the end."""
        out = []
        for i, p in enumerate(points):
            before = points[i - 1][:2] if i else here
            if i == len(points) - 1:
                out.append((p[0], p[1], p[2], 0.0, True))
                continue
            turn = _turn_deg(before, p[:2], points[i + 1][:2]) >= STRAIGHT_DEG
            out.append((p[0], p[1], p[2], TURN_SPEED if turn else math.inf, turn))
        return out

    # driving
    def _target_speed(self, _dist=None):
        """The fastest speed from which the vehicle can still slow down for every point
        ahead within braking distance."""
        target, x, y, d = self.cruise, self.x, self.y, 0.0
        reach = self.cruise**2 / (2 * BRAKE) + 1.0
        for px, py, _, v_pass, _ in self.path:
            d += math.hypot(px - x, py - y)
            x, y = px, py
            if d > reach:
                break
            target = min(target, math.sqrt(min(v_pass, self.cruise) ** 2 + 2 * BRAKE * d))
        return target

    def _advance(self, dt):
        move = self._speed_toward(self._target_speed(), dt)
        path = self.path  # drive_to (another thread) may put a new one in its place
        while path and move > 0:
            px, py, node, _, turn = path[0]
            dist = math.hypot(px - self.x, py - self.y)
            if dist > 0:
                self.heading = math.degrees(math.atan2(px - self.x, py - self.y)) % 360
            if move < dist:
                self.x += move * (px - self.x) / dist
                self.y += move * (py - self.y) / dist
                return
            self.x, self.y, self.node = px, py, node
            path.pop(0)
            move -= dist
            if not path:
                self.speed = 0.0
            elif turn and self.rng.random() < RED_LIGHT:  # a red light at this crossing
                self.hold_until = self.t + dt + self.rng.uniform(10, 45)
                self.speed = 0.0
                return


def _minus(a, b):
    return a[0] - b[0], a[1] - b[1]


def _project(p, a, b):
    """The point of segment a-b nearest to p."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    f = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / length2))
    return ax + f * dx, ay + f * dy


def _turn_deg(a, b, c):
    """How far the heading turns at b, going a -> b -> c, degrees (0 straight on, 180 back)."""
    h1 = math.atan2(b[0] - a[0], b[1] - a[1])
    h2 = math.atan2(c[0] - b[0], c[1] - b[1])
    return abs(math.degrees((h2 - h1 + math.pi) % (2 * math.pi) - math.pi))


def road_drive(graph, seed=1, duration_s=1800, start_t=1795860000.0, start_xy=(0.0, 0.0), radius_m=3000):
    """A reference drive on the roads: trips between random places within `radius_m` of
    `start_xy`, with stops, at 1 Hz (as `route.city_drive`)."""
    rng = random.Random(seed)
    mover = RoadMover(graph, *start_xy, start_t, rng)
    samples = []
    while len(samples) < duration_s:
        if mover.arrived:
            if samples and rng.random() < 0.5:
                mover.wait(rng.uniform(30, 180))  # at a scene or a hospital
            x = start_xy[0] + rng.uniform(-radius_m, radius_m)
            y = start_xy[1] + rng.uniform(-radius_m, radius_m)
            mover.drive_to(x, y, cruise=rng.uniform(11, 17))
        samples.append(mover.step())
    return samples
