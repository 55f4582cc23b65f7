"""`make bench`: measured figures, one line each (`name value unit`), all of them in
var/bench.json as {"name": {"value": ..., "unit": ...}}."""
