"""Run every benchmark: `python -m bench [GROUP ...]` (groups: policy, unit, memory,
nmea, gateway, ha, broker, outbox, web, basemap, roads); with groups, the other figures in
var/bench.json are kept."""

import json
import sys
from pathlib import Path

from . import basemap, broker, gateway, ha, memory, nmea_speed, outbox, policy, roads, unit, web

GROUPS = {
    "policy": policy.figures,
    "unit": unit.figures,
    "memory": memory.figures,
    "nmea": nmea_speed.figures,
    "gateway": gateway.figures,
    "ha": ha.figures,
    "broker": broker.figures,
    "outbox": outbox.figures,
    "web": web.figures,
    "basemap": basemap.figures,
    "roads": roads.figures,
}
OUT = Path("var") / "bench.json"


def main(argv):
    names = argv or list(GROUPS)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        print(f"bench: unknown group {', '.join(unknown)}; groups: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    results = json.loads(OUT.read_text()) if OUT.exists() and argv else {}
    for name in names:
        for figure, value, unit_name in GROUPS[name]():
            print(f"{figure} {value} {unit_name}", flush=True)
            results[figure] = {"value": value, "unit": unit_name}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
