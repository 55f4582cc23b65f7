# Siaga unit firmware entry point: build the objects, run the supervisor for ever.
import sys

sys.path.append("lib")

import gc  # noqa: E402

import asyncio  # noqa: E402

import boards  # noqa: E402
import config  # noqa: E402
from unit import Unit  # noqa: E402


def _crash(loop, context):
    print("unit: unhandled", context.get("exception"), context.get("message"))
    sys.print_exception(context["exception"])


def main():
    cfg = config.load()
    board = boards.load(cfg)
    gc.collect()
    unit = Unit(board, cfg)
    unit.heap_code = gc.mem_alloc()  # the code's share of the heap (zero when frozen)
    loop = asyncio.get_event_loop()
    loop.set_exception_handler(_crash)
    try:
        asyncio.run(unit.run())
    except SystemExit:
        pass


main()
