"""The compiled core runs only when it matches its sources; PERPLEDGER_PURE=1 runs the sources.

A stale extension module would silently shadow an edited source (Python
prefers an extension to a `.py`): the import-time check refuses the whole
compiled group then, and runs the sources with a warning (an ImportError with
PERPLEDGER_COMPILED=require, as CI sets it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ledger
from ledger import compiled

ROOT = Path(ledger.__file__).resolve().parent.parent
BUILT = (ROOT / "ledger/_build.json").exists()
needs_build = pytest.mark.skipif(
    not BUILT and os.environ.get("PERPLEDGER_CI") != "1",
    reason="no compiled build in this checkout (pip install -e . makes one)")


def _tree(tmp: Path, *, extension: bool = True) -> tuple[Path, Path]:
    """A fake compiled tree: one source, its manifest entry and (maybe) an extension file."""
    src = tmp / "pkg" / "mod.py"
    src.parent.mkdir(parents=True)
    src.write_text("X = 1\n")
    if extension:
        src.with_suffix(compiled._EXT_SUFFIXES[0]).write_bytes(b"")
    manifest = tmp / "pkg" / "_build.json"
    manifest.write_text(json.dumps({"mypyc": "test", "modules": {
        "pkg.mod": hashlib.sha256(src.read_bytes()).hexdigest()}}))
    return src, manifest


def test_a_build_that_matches_its_sources_is_used(tmp_path: Path) -> None:
    _, manifest = _tree(tmp_path)
    assert compiled.decide(tmp_path, manifest, pure=False)[0] == "compiled"


def test_an_edited_source_refuses_the_compiled_group(tmp_path: Path) -> None:
    src, manifest = _tree(tmp_path)
    src.write_text("X = 2\n")
    mode, reason, from_source = compiled.decide(tmp_path, manifest, pure=False)
    assert mode == "stale" and "mod.py changed" in reason and from_source == {"pkg.mod"}


def test_a_missing_extension_refuses_the_compiled_group(tmp_path: Path) -> None:
    _, manifest = _tree(tmp_path, extension=False)
    mode, reason, _ = compiled.decide(tmp_path, manifest, pure=False)
    assert mode == "stale" and "missing" in reason


def test_pure_on_request_and_without_a_build(tmp_path: Path) -> None:
    _, manifest = _tree(tmp_path)
    assert compiled.decide(tmp_path, manifest, pure=True)[:2] == ("pure", "PERPLEDGER_PURE=1")
    bare = tmp_path / "bare"
    _tree(bare, extension=False)[1].unlink()
    assert compiled.decide(bare, bare / "pkg" / "_build.json", pure=False)[0] == "pure"


def test_extensions_without_a_manifest_are_refused(tmp_path: Path) -> None:
    """A build that fell back to pure Python deletes the manifest but leaves the old
    extension modules: they would shadow the sources, so they are refused."""
    _, manifest = _tree(tmp_path)
    manifest.unlink()
    mode, reason, from_source = compiled.decide(tmp_path, manifest, pure=False)
    assert mode == "stale" and "without a build manifest" in reason
    assert from_source == {"pkg.mod"}
    assert compiled.decide(tmp_path, manifest, pure=True)[::2] == ("pure", {"pkg.mod"})


def test_an_extension_the_build_did_not_make_is_refused(tmp_path: Path) -> None:
    _, manifest = _tree(tmp_path)
    old = tmp_path / "pkg" / "dropped.py"
    old.write_text("Y = 1\n")
    old.with_suffix(compiled._EXT_SUFFIXES[0]).write_bytes(b"")
    mode, reason, from_source = compiled.decide(tmp_path, manifest, pure=False)
    assert mode == "stale" and "pkg.dropped" in reason
    assert from_source == {"pkg.mod", "pkg.dropped"}


def _probe(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    code = ("import ledger.core.fixedpoint as f, ledger.store.prepare as p, ledger.compiled as c;"
            "print(f.__file__); print(p.__file__); print(c.status()['build'])")
    base = {k: v for k, v in os.environ.items() if not k.startswith("PERPLEDGER_")}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, env={**base, "PYTHONPATH": str(cwd), **env})


@needs_build
def test_the_real_build_loads_compiled_and_pure_on_request() -> None:
    out = _probe(ROOT)
    assert out.returncode == 0, out.stderr
    fixedpoint, prepare, build = out.stdout.split()
    assert build == "compiled" and fixedpoint.endswith(".so") and prepare.endswith(".so")
    out = _probe(ROOT, PERPLEDGER_PURE="1")
    fixedpoint, prepare, build = out.stdout.split()
    assert build == "pure" and fixedpoint.endswith(".py") and prepare.endswith(".py")


@needs_build
def test_an_edited_source_runs_instead_of_its_stale_compiled_module(tmp_path: Path) -> None:
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "ledger", copy / "ledger",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for lib in ROOT.glob("perpledger_core__mypyc*"):
        shutil.copy2(lib, copy / lib.name)
    assert _probe(copy).stdout.split()[2] == "compiled"
    edited = copy / "ledger/core/fixedpoint.py"
    edited.write_text(edited.read_text() + "\n# edited after the build\n")
    out = _probe(copy)
    fixedpoint, prepare, build = out.stdout.split()
    assert build == "stale" and fixedpoint.endswith(".py") and prepare.endswith(".py")
    assert "refusing the compiled core" in out.stderr and "fixedpoint.py changed" in out.stderr
    strict = _probe(copy, PERPLEDGER_COMPILED="require")
    assert strict.returncode != 0 and "ImportError" in strict.stderr


def test_ci_runs_the_compiled_core() -> None:
    if os.environ.get("PERPLEDGER_CI") != "1":
        pytest.skip("checked under CI (.ci/run): a green CI run used the compiled core")
    import ledger.core.engine  # noqa: F401

    assert compiled.status()["build"] == "compiled", compiled.status()
    assert "ledger.core.engine" in compiled.loaded()
