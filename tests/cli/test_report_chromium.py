"""The demo's incident report opened in headless Chromium: not blank, every plot there."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from projections.browser import chromium_path, dump_dom, print_pdf, screenshot
from tests.demo_chain import BRANCH, demo_ledger, logs_configured  # noqa: F401
from tools.cli import app

pytestmark = [
    pytest.mark.needs_chromium,
    pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed"),
]


@pytest.fixture(scope="module")
def page(demo_ledger: tuple[Path, dict[str, Any]],  # noqa: F811
         tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("chromium") / "report.html"
    r = CliRunner().invoke(app, ["report", "incident", "--branch", str(BRANCH), "--out",
                                 str(out), "--data", str(demo_ledger[0])])
    assert r.exit_code == 0, r.output
    return out


def test_chromium_builds_every_plot_with_its_size(page: Path) -> None:
    dom = dump_dom(page)
    imgs = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', dom)
    # four markets x (funding, mark) + liquidations
    assert len(imgs) == 9, [a for a, _ in imgs]
    for alt, data in imgs:
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        assert img.size == (800, 320), alt
        assert len(img.getcolors(maxcolors=1 << 16) or []) > 20, alt
    assert "Incident report: branch 1" in dom
    assert "Liquidations per block" in dom


def test_screenshot_is_not_blank(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    screenshot(page, shot, width=1100, height=1600)
    img = Image.open(shot).convert("RGB")
    assert img.size == (1100, 1600)
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 200  # text, tables and plots, not a blank page
    white = max(n for n, c in colours if c == (255, 255, 255)) if any(
        c == (255, 255, 255) for _, c in colours) else 0
    assert white < 0.95 * img.size[0] * img.size[1]


def test_pdf_is_printed(page: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    print_pdf(page, pdf)
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-"
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 3
