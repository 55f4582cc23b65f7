# Runs firmware tests under MicroPython: `micropython runner.py MODULE[:FUNCTION] ...`.
# Prints "ok MODULE FUNCTION" or "FAIL MODULE FUNCTION" with the traceback.
import sys


def run(spec):
    modname, _, only = spec.partition(":")
    mod = __import__(modname)
    failed = 0
    for name in sorted(dir(mod)):
        if not name.startswith("test_") or (only and name != only):
            continue
        try:
            getattr(mod, name)()
            print("ok", modname, name)
        except Exception as e:  # noqa: BLE001 - report every failure, go on
            failed += 1
            print("FAIL", modname, name)
            sys.print_exception(e)
    return failed


failures = 0
for arg in sys.argv[1:]:
    failures += run(arg)
sys.exit(1 if failures else 0)
