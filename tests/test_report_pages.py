"""The report's pages (largelr.report_pages): figure pages with their captions, the styled summary page."""

import base64
from pathlib import Path

from test_aggregate import sweep

from largelr.aggregate import mark_included
from largelr.cli_outputs import write_summary_html
from largelr.report_pages import arrow_class, family_of, write_figure_pages

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
FAMILIES = ["normalized", "compressibility", "pruning", "dynamics", "mechanism", "csi_core"]


def test_each_figure_file_is_named_to_its_family():
    assert family_of("tiny_parity-fcn", FAMILIES) == "normalized"
    assert family_of("tiny_parity-fcn.pruning", FAMILIES) == "pruning"
    assert family_of("tiny_parity-fcn.compressibility", FAMILIES) == "compressibility"
    assert family_of("mechanism", FAMILIES) == "mechanism" and family_of("csi_core", FAMILIES) == "csi_core"
    assert family_of("tiny_parity-fcn.hilo", FAMILIES) is None  # a family not drawn: no page
    assert (arrow_class("↑ +1.00"), arrow_class("↓ -0.90"), arrow_class("~ +0.50")) == ("up", "down", "flat")


def test_figure_pages_hold_the_png_and_the_family_caption(tmp_path):
    (tmp_path / "d-m.pruning.png").write_bytes(PNG)
    (tmp_path / "mechanism.png").write_bytes(PNG)
    captions = tmp_path / "captions"
    captions.mkdir()
    (captions / "pruning.rst").write_text("Pruning curves (paper Figs 20, 21): retention ``Acc``.")
    (captions / "mechanism.rst").write_text("The mechanism.")
    pages = write_figure_pages(tmp_path, ["pruning", "mechanism"], captions)
    assert sorted(p.name for p in pages) == ["d-m.pruning.html", "mechanism.html"]
    page = (tmp_path / "d-m.pruning.html").read_text()
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in page  # the very PNG, inline
    caption = page[page.index("<figcaption>") : page.index("</figcaption>")]
    assert "Pruning curves (paper Figs 20, 21)" in caption and "Acc" in caption
    assert "The mechanism." in (tmp_path / "mechanism.html").read_text()


def test_summary_page_is_a_styled_document(tmp_path):
    cells = mark_included(sweep({0.01: [0.5, 0.7], 0.1: [0.8, 0.9], 1.0: [0.95, 0.95]}))
    cells.to_parquet(tmp_path / "cells.parquet")
    write_summary_html([str(tmp_path / "cells.parquet")], str(tmp_path / "summary.html"))
    page = Path(tmp_path / "summary.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and '<div class="largelr">' in page
    assert "<pre>" not in page and page.count("<table") == 2
