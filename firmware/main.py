# Siaga unit firmware entry point: build the objects, run the supervisor for ever.
import sys

sys.path.append("lib")

import gc  # noqa: E402

import asyncio  # noqa: E402

BOOT_ONLY = ("config", "boards")  # needed to start, then given back to the heap


def _crash(loop, context):
    print("unit: unhandled", context.get("exception"), context.get("message"))
    sys.print_exception(context["exception"])


def _build():
    import boards
    import config

    cfg = config.load()
    board = boards.load(cfg)
    del boards, config
    for name in BOOT_ONLY:  # gone before the rest loads: the boot's peak is lower
        sys.modules.pop(name, None)
    gc.collect()
    from unit import Unit

    return Unit(board, cfg)


def main():
    unit = _build()
    gc.collect()
    unit.heap_code = gc.mem_alloc()  # code and objects at start (code: none when frozen)
    loop = asyncio.get_event_loop()
    loop.set_exception_handler(_crash)
    try:
        asyncio.run(unit.run())
    except SystemExit:
        pass


main()
