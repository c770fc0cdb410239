"""The compiled core: use it when it matches its sources, else run the sources.

`pip install -e .` compiles ledger/core and the block preparation with mypyc
(setup.py) into C extension modules beside the `.py` files, and records the
sha256 of each compiled source in `ledger/_build.json`. Python would import an
extension module in preference to its source, edited or not, so `import
ledger` decides once, before any of them loads (`activate`):

- PERPLEDGER_PURE=1: pure Python, on purpose (benchmarks report both builds);
- every compiled module's source hashes as it did at the build: the compiled
  modules load;
- a source changed since the build, an extension is missing, or an
  extension the manifest does not name sits beside its source (a build that
  fell back to pure Python leaves the old ones): the compiled modules are
  refused, ALL of them (they call each other natively, so half a group would
  run two copies of the state), the
  sources run instead, and a warning on stderr says which file changed and that
  `pip install -e .` rebuilds. With PERPLEDGER_COMPILED=require that is an
  ImportError instead (CI sets it: a green CI run used the compiled core).

`loaded()` lists the compiled modules in use; `status()` says which build runs
and why.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_PKG = Path(__file__).resolve().parent
MANIFEST = _PKG / "_build.json"
_EXT_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)

#: "compiled", "pure" (no compiled build, or PERPLEDGER_PURE=1) or "stale" (refused).
_mode = "pure"
_reason = "not decided yet"


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Import the named modules from their `.py` sources, never from an extension module."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for base in path or []:
            src = Path(base) / (fullname.rpartition(".")[2] + ".py")
            if src.exists():
                return importlib.util.spec_from_file_location(fullname, src)
        return None


def _source(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def _has_extension(root: Path, module: str) -> bool:
    src = _source(root, module)
    return any(src.with_suffix(sfx).exists() for sfx in _EXT_SUFFIXES)


def _shadowing(root: Path, package: Path) -> frozenset[str]:
    """The modules under `package` whose source has an extension module beside it (the
    extension would load instead of the source)."""
    suffixes = sorted(_EXT_SUFFIXES, key=len, reverse=True)
    out = set()
    for path in package.rglob("*"):
        sfx = next((s for s in suffixes if path.name.endswith(s)), None)
        if sfx is not None:
            src = path.with_name(path.name[:-len(sfx)] + ".py")
            if src.exists():
                out.add(".".join(src.relative_to(root).with_suffix("").parts))
    return frozenset(out)


def decide(root: Path, manifest_path: Path, pure: bool) -> tuple[str, str, frozenset[str]]:
    """(mode, reason, modules to load from source) for the tree at `root` (the import root);
    the package is the manifest's directory.

    mode is "compiled", "pure" or "stale" (see the module docstring). An extension module
    the manifest does not name (a build that fell back to pure Python, or a module no
    longer compiled, leaves the old one behind) is refused like a stale one.
    """
    present = _shadowing(root, manifest_path.parent)
    try:
        manifest = json.loads(manifest_path.read_text())
        modules: dict[str, str] = manifest["modules"]
    except (OSError, ValueError, KeyError, TypeError):
        if present and not pure:
            return "stale", (f"compiled modules without a build manifest (left by an earlier "
                             f"build): {', '.join(sorted(present))}"), present
        if pure:
            return "pure", "PERPLEDGER_PURE=1", present
        return "pure", "no compiled build (pip install -e . compiles one)", present
    names = frozenset(modules) | present
    if pure:
        return "pure", "PERPLEDGER_PURE=1", names
    strays = present - frozenset(modules)
    if strays:
        return "stale", (f"compiled modules the build did not make: "
                         f"{', '.join(sorted(strays))}"), names
    for module, digest in sorted(modules.items()):
        src = _source(root, module)
        try:
            now = hashlib.sha256(src.read_bytes()).hexdigest()
        except OSError:
            now = ""
        if now != digest:
            return "stale", f"{src} changed since the compiled build", names
        if not _has_extension(root, module):
            return "stale", f"the compiled module of {src} is missing", names
    return "compiled", f"{len(names)} modules compiled by mypyc {manifest.get('mypyc')}", \
        frozenset()


def activate() -> None:
    """Decide, once per process, whether the compiled modules or their sources run."""
    global _mode, _reason
    if any(isinstance(f, _SourceFirst) for f in sys.meta_path) or _reason != "not decided yet":
        return
    _mode, _reason, from_source = decide(_PKG.parent, MANIFEST,
                                         os.environ.get("PERPLEDGER_PURE") == "1")
    if _mode == "stale":
        msg = (f"perpledger: refusing the compiled core: {_reason}; running the pure-Python "
               "sources (slower). Rebuild with `pip install -e .`, or set PERPLEDGER_PURE=1.")
        if os.environ.get("PERPLEDGER_COMPILED") == "require":
            raise ImportError(msg)
        print(msg, file=sys.stderr)
    elif _mode == "pure" and os.environ.get("PERPLEDGER_COMPILED") == "require" \
            and os.environ.get("PERPLEDGER_PURE") != "1":
        raise ImportError(f"perpledger: PERPLEDGER_COMPILED=require but {_reason}")
    if from_source:
        sys.meta_path.insert(0, _SourceFirst(from_source))


def loaded() -> list[str]:
    """The compiled (extension) modules of ledger in use in this process."""
    return sorted(name for name, mod in list(sys.modules.items())
                  if name.startswith("ledger.")
                  and str(getattr(mod, "__file__", "") or "").endswith(_EXT_SUFFIXES))


def status() -> dict[str, object]:
    """Which build runs and why (for benchmarks and `ledgerctl info`)."""
    return {"build": _mode, "reason": _reason, "compiled_modules_loaded": len(loaded())}
