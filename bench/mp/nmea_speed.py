# NMEA sentences decoded per second by the firmware's decoder in this MicroPython.
# Reads capture files named on stdin (one path a line), feeds each in 256-byte chunks.
import json
import sys
import time

from nmea import NMEADecoder

data = []
for path in sys.stdin.read().split():
    with open(path, "rb") as f:
        data.append(f.read())

d = NMEADecoder()
rounds = 0
start = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < 3000:
    for blob in data:
        mv = memoryview(blob)
        for i in range(0, len(blob), 256):
            d.feed(mv[i : i + 256])
    rounds += 1
ms = time.ticks_diff(time.ticks_ms(), start)
print(json.dumps({"sentences": d.sentences, "handled": d.sentences + d.ignored, "ms": ms, "rounds": rounds}))
