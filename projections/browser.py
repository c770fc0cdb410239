"""Headless Chromium (Debian's `chromium`), started the way the brief fixes it: for the
report's optional PDF, its screenshot in the README, and the browser test.

Each run gets a fresh `--user-data-dir` in a temporary directory, no network
services, and a bounded time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ledger.errors import CommandInvalid

#: flags every run uses (the brief's list)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
TIMEOUT_S = 120


def chromium_path() -> str | None:
    """The chromium binary: $PERPLEDGER_CHROMIUM, /usr/bin/chromium, or `chromium` on PATH."""
    for cand in (os.environ.get("PERPLEDGER_CHROMIUM"), "/usr/bin/chromium"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return shutil.which("chromium")


def run_chromium(url_or_path: str | os.PathLike[str], *extra: str) -> subprocess.CompletedProcess[
        bytes]:
    """Run headless chromium on a file or URL with extra flags; raise if it fails."""
    exe = chromium_path()
    if exe is None:
        raise CommandInvalid("chromium is not installed (Debian: apt-get install chromium); "
                             "it renders the PDF and screenshots")
    target = str(url_or_path)
    if os.path.exists(target):
        target = Path(target).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="perpledger-chromium-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *extra, target]
        proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise CommandInvalid(f"chromium exited with {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')[-400:]}")
    return proc


def print_pdf(html_path: str | os.PathLike[str], pdf_path: str | os.PathLike[str]) -> None:
    """Print an HTML file to PDF (A4, no header or footer with dates)."""
    run_chromium(html_path, f"--print-to-pdf={Path(pdf_path).resolve()}",
                 "--no-pdf-header-footer")
    if not Path(pdf_path).exists():
        raise CommandInvalid(f"chromium did not write {pdf_path}")


def screenshot(html_path: str | os.PathLike[str], png_path: str | os.PathLike[str], *,
               width: int = 1100, height: int = 1400) -> None:
    """A PNG screenshot of the top of an HTML file at a window size."""
    run_chromium(html_path, f"--screenshot={Path(png_path).resolve()}",
                 f"--window-size={width},{height}", "--hide-scrollbars")
    if not Path(png_path).exists():
        raise CommandInvalid(f"chromium did not write {png_path}")


def dump_dom(html_path: str | os.PathLike[str]) -> str:
    """The DOM chromium built from an HTML file, serialized."""
    return run_chromium(html_path, "--dump-dom").stdout.decode()
