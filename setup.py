"""Build hook: compile the pure exchange core with mypyc when a C compiler is present.

`pip install -e .` and wheel builds compile `ledger/core/*.py` and the block
preparation (`ledger/store/prepare.py`) into one mypyc group of C extension
modules, placed beside their sources. Without a C compiler (or with
PERPLEDGER_BUILD_PURE=1, or without mypyc in the build environment) nothing is
compiled and the same sources run as pure Python.

The build also writes `ledger/_build.json`: the sha256 of every compiled
module's source as it was compiled. At import, `ledger.compiled` refuses the
compiled modules if any source differs (a stale extension would otherwise
shadow the edited source) and runs pure Python instead; PERPLEDGER_PURE=1 runs
pure Python on purpose. Everything this writes is git-ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
#: The compiled group: the state machine, the codec's per-event work and the block
#: preparation (pure computation, no I/O).
COMPILED = sorted([*(p for p in (ROOT / "ledger/core").glob("*.py") if p.name != "__init__.py"),
                   ROOT / "ledger/events/codec.py", ROOT / "ledger/store/chunks.py",
                   ROOT / "ledger/store/prepare.py"])
#: mypyc names the group's shared library `<GROUP>__mypyc` (a top-level extension module).
GROUP = "perpledger_core"
MANIFEST = ROOT / "ledger/_build.json"


def _say(msg: str) -> None:
    print(f"perpledger build: {msg}", file=sys.stderr)


def _have_c_compiler() -> bool:
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    return bool(cc) and shutil.which(cc[0]) is not None


def _manifest(paths: list[Path]) -> dict[str, object]:
    import mypy.version

    return {
        "mypyc": mypy.version.__version__,
        "python": sys.implementation.cache_tag,
        "group": GROUP,
        "modules": {".".join(p.relative_to(ROOT).with_suffix("").parts):
                    hashlib.sha256(p.read_bytes()).hexdigest() for p in paths},
    }


def ext_modules() -> list[object]:
    MANIFEST.unlink(missing_ok=True)
    if os.environ.get("PERPLEDGER_BUILD_PURE") == "1":
        _say("PERPLEDGER_BUILD_PURE=1: pure Python, nothing compiled")
        return []
    if not _have_c_compiler():
        _say("no C compiler found: the core runs as pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not installed in the build environment: pure Python")
        return []
    paths = [str(p.relative_to(ROOT)) for p in COMPILED]
    try:
        # PERPLEDGER_MYPYC_OPT: the C optimisation level (mypyc's default is 3).
        mods = mypycify(paths, opt_level=os.environ.get("PERPLEDGER_MYPYC_OPT", "2"),
                        group_name=GROUP, multi_file=True)
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error it cannot compile
        _say(f"mypyc could not compile the core ({exc!r}): pure Python")
        return []
    MANIFEST.write_text(json.dumps(_manifest(COMPILED), indent=1, sort_keys=True) + "\n")
    _say(f"compiling {len(paths)} modules with mypyc (group {GROUP})")
    return list(mods)


setup(ext_modules=ext_modules(), package_data={"ledger": ["_build.json"]})
