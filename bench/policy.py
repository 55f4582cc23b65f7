"""The reporting policy on the reference city drive: messages relative to fixed 5-second
reporting, and the largest distance between the true route and the route
reconstructed from the reports by straight lines."""

import json
import math
from pathlib import Path

from simulators import vunit
from simulators.geo import to_xy
from simulators.nmea import Receiver
from simulators.route import city_drive

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"


def run_micropython(script, stdin=b"", heap="96K", timeout=600):
    """A bench script in the unix port, its output as JSON lines."""
    run = vunit.run_micropython(
        [script], REPO, heap, (FIRMWARE / "lib", FIRMWARE), stdin=stdin, timeout=timeout
    )
    if run.returncode:
        raise RuntimeError(f"{script} failed: {(run.stdout + run.stderr).decode()[-2000:]}")
    return [json.loads(line) for line in run.stdout.decode().splitlines() if line.strip()]


def reference_drive(seed=7, duration_s=1800, noise_m=2.0):
    samples = city_drive(seed=seed, duration_s=duration_s)
    receiver = Receiver(seed=seed, noise_m=noise_m)
    return samples, b"".join(receiver.encode(s) for s in samples)


def _segment_distance(p, a, b):
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    u = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + u * dx), py - (ay + u * dy))


def max_deviation(samples, reports):
    """Each true position against the straight line between the reports around it."""
    pts = [(r["t"], to_xy(r["lat"], r["lon"])) for r in reports]
    worst, i = 0.0, 0
    for s in samples:
        if s.t < pts[0][0] or s.t > pts[-1][0]:
            continue
        while pts[i + 1][0] < s.t:
            i += 1
        worst = max(worst, _segment_distance((s.x, s.y), pts[i][1], pts[i + 1][1]))
    return worst


def replay(samples, nmea_bytes, heap="96K"):
    out = run_micropython(REPO / "bench" / "mp" / "policy_replay.py", nmea_bytes, heap)
    summary = out[-1]["summary"]
    reports = out[:-1]
    duration = samples[-1].t - samples[0].t + 1
    return {
        "reports": reports,
        "summary": summary,
        "ratio": len(reports) / (duration / 5.0),
        "max_deviation_m": max_deviation(samples, reports),
    }


def figures():
    samples, data = reference_drive()
    result = replay(samples, data)
    return [
        ("firmware.reports_vs_fixed_5s", round(result["ratio"], 4), "ratio"),
        ("firmware.max_route_deviation_m", round(result["max_deviation_m"], 1), "m"),
    ]
