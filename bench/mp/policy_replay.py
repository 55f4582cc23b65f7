# Replay NMEA bytes (stdin) through the firmware's decoder, fix filter and reporting
# policy, as the unit does; print one JSON line per report and a summary line.
import gc
import json
import os
import sys

from fixfilter import FixFilter
from nmea import NMEADecoder
from reporter import ReportPolicy

decoder = NMEADecoder()
fixes = FixFilter()
policy = ReportPolicy(json.loads(os.getenv("SIAGA_POLICY") or "{}"))
counts = {"fixes": 0, "reports": 0}


def on_fix(fix):
    counts["fixes"] += 1
    if not fixes.accept(fix):
        return
    reason = policy.update(fixes.t, fixes.lat, fixes.lon, fixes.speed, fixes.track)
    if reason:
        counts["reports"] += 1
        print(json.dumps({"t": fixes.t, "lat": fixes.lat, "lon": fixes.lon, "why": reason}))


decoder.on_fix = on_fix
buf = bytearray(512)
stdin = sys.stdin.buffer
while True:
    n = stdin.readinto(buf)
    if not n:
        break
    decoder.feed(memoryview(buf)[:n])
gc.collect()
counts["rejected"] = fixes.rejected
counts["heap_after"] = gc.mem_alloc()
print(json.dumps({"summary": counts}))
