# Siaga unit firmware entry point: build the objects, run the supervisor for ever.
# Whatever ends it but a technician's Ctrl-C (which takes the board over for mpremote)
# resets the unit rather than leaving it at the REPL: a MemoryError, the unit giving up
# on a starved heap (flashstate.Restart), a bug. The reason is kept on flash for the
# next birth's `reset` (docs/firmware-memory.md).
import sys

# Where the firmware's modules come from: code frozen into the MicroPython build first, so
# a stray .mpy file on the flash never silently replaces it; an image installed on
# purpose goes first instead (provisioning/image.py sets UPDATE in the main.py it
# installs with it). docs/firmware-memory.md, "Frozen code and the flash".
UPDATE = None  # this main.py came with an image: its version. None: the frozen build's


def _search_path():
    frozen = [p for p in sys.path if p.startswith(".frozen")]
    flash = [p for p in sys.path if p not in frozen] + ["lib"]  # "": the flash's root
    sys.path[:] = flash + frozen if UPDATE else frozen + flash


_search_path()

import gc  # noqa: E402
import micropython  # noqa: E402
from micropython import const  # noqa: E402

import asyncio  # noqa: E402
from heap import Restart  # noqa: E402

# (a name that starts with _ and is a const() costs the heap nothing: no global, no qstr)
# needed to start, then given back to the heap
_BOOT_ONLY = const(("config", "boards", "startup", "outbox_read", "flashstate"))
_RESET_EXIT = const(75)  # the unix port has no machine.reset(): its virtual board restarts the process
RESET_DELAY_S = {"memory": 1, "crash": 5}  # a unit that crashes at start resets slowly

if hasattr(micropython, "alloc_emergency_exception_buf"):  # a traceback from an IRQ
    micropython.alloc_emergency_exception_buf(100)


def _forget(names):
    for name in names:
        sys.modules.pop(name, None)
    gc.collect()


def _build():
    import boards
    import config

    cfg = config.load()
    board = boards.load(cfg)
    del boards, config
    _forget(_BOOT_ONLY)  # gone before the rest loads: the boot's peak is lower
    import startup

    unit = startup.build(board, cfg)
    del startup
    _forget(_BOOT_ONLY)  # what built it, what the outbox read its journal with
    return unit


def _reset(cause):
    from flashstate import note_reset

    note_reset(cause)
    import time

    time.sleep(RESET_DELAY_S[cause])
    import machine

    if hasattr(machine, "reset"):
        machine.reset()
    sys.exit(_RESET_EXIT)


def main():
    try:
        unit = _build()
        gc.collect()
        # code and objects at start (code: none when frozen), the emergency reserve apart
        unit.heap.start = gc.mem_alloc() - unit.heap.reserve_bytes
        asyncio.get_event_loop().set_exception_handler(unit.task_failed)
        unit.start()
        run, unit = unit.link_task(), None  # the unit lives in its tasks: when they end, it goes
        asyncio.run(run)
    except SystemExit:  # ignition off: the unit said goodbye
        return
    except KeyboardInterrupt:  # a technician at the console (mpremote): the REPL, on purpose
        raise
    except Restart as e:
        cause = e.args[0]
    except MemoryError:
        cause = "memory"
    except BaseException as e:  # noqa: BLE001 - whatever it is, the unit starts again
        cause = "crash"
        try:
            sys.print_exception(e)
        except BaseException:  # noqa: BLE001, S110 - not even that: reset all the same
            pass
    asyncio.new_event_loop()  # the old loop's tasks, and all they hold, go back to the heap
    gc.collect()
    print("unit: reset (%s)" % cause)
    _reset(cause)


main()
