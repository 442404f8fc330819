"""Pages of the HTML report (``snakemake --report``): each study's styled summary page, and one page
per figure with its caption under it, so that a figure is never shown without what it says.

The pages are self-contained (figures inline as base64 PNG); their styles are scoped to the class
``largelr`` so that the workflow description, which shows the summaries on the report's landing
page, can include them unchanged.
"""

from __future__ import annotations

import base64
import html
import warnings
from pathlib import Path

from largelr.registry.figures import FIGURE_FAMILIES, figure_files

STYLE = """<style>
.largelr { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; max-width: 72rem;
  line-height: 1.45; }
.largelr h2 { font-size: 1.25rem; margin: 1.2rem 0 .3rem; }
.largelr h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
.largelr p { margin: .3rem 0; }
.largelr table { border-collapse: collapse; font-size: .85rem; margin: .4rem 0 .8rem; }
.largelr th, .largelr td { border-bottom: 1px solid #e5e7eb; padding: .25rem .6rem; text-align: left;
  white-space: nowrap; }
.largelr th { background: #f3f4f6; font-weight: 600; }
.largelr .up { color: #047857; font-weight: 600; } .largelr .down { color: #b91c1c; font-weight: 600; }
.largelr .flat { color: #6b7280; }
.largelr .note { color: #4b5563; font-size: .85rem; white-space: pre-line; }
.largelr figure { margin: 0; } .largelr figure img { max-width: 100%; height: auto; }
.largelr figcaption { margin-top: .6rem; font-size: .9rem; max-width: 60rem; }
</style>"""


def page(body: str, title: str) -> str:
    """A complete HTML document around ``body``, styled."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'{STYLE}</head>\n<body><div class="largelr">\n{body}\n</div></body></html>\n'
    )


def arrow_class(text: str) -> str:
    """The CSS class of a trend cell, from its arrow."""
    return {"↑": "up", "↓": "down"}.get(text[:1], "flat")


def trend_cells_html(table_html: str, texts: list[str]) -> str:
    """Colour the trend cells of a pandas ``to_html`` table by their arrow."""
    for text in dict.fromkeys(texts):
        escaped = html.escape(text)
        table_html = table_html.replace(f"<td>{escaped}</td>", f'<td class="{arrow_class(text)}">{escaped}</td>')
    return table_html


def family_of(stem: str, families: list[str]) -> str | None:
    """The figure family (of ``families``) whose file pattern (largelr.registry.figures) names ``stem``."""
    patterns = figure_files()
    for family, pattern in patterns.items():  # fixed names, then "{dataset}-{model}.<suffix>"
        suffix = pattern.split("}")[-1]
        if ("{" not in pattern and stem == pattern) or ("{" in pattern and suffix and stem.endswith(suffix)):
            return family if family in families else None
    plain = [family for family in families if patterns[family].endswith("}")]  # "{dataset}-{model}"
    return plain[0] if plain else None


def caption_html(rst_path: Path) -> str:
    """A caption file (reStructuredText) as HTML; its text in a paragraph where docutils is missing."""
    text = rst_path.read_text()
    try:
        from docutils.core import publish_parts
    except ImportError:
        return f"<p>{html.escape(text)}</p>"
    with warnings.catch_warnings():  # docutils >= 0.22 announces a new name for writer_name; older ones lack it
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return publish_parts(text, writer_name="html", settings_overrides={"report_level": 5})["body"]


def figure_page(png: Path, title: str, caption: str) -> str:
    """One figure inline, its caption (HTML) under it."""
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return page(
        f'<h2>{html.escape(title)}</h2>\n<figure><img src="data:image/png;base64,{data}" '
        f'alt="{html.escape(png.stem)}">\n<figcaption>{caption}</figcaption></figure>',
        title,
    )


def write_figure_pages(out_dir: str | Path, families: list[str], caption_dir: str | Path) -> list[Path]:
    """Beside every PNG of the study's folder that belongs to ``families``: ``<stem>.html``, the figure
    with its family's caption (``<caption_dir>/<caption>.rst``, the caption its record names). Returns
    the pages written."""
    from largelr.io import atomic_path

    out_dir, written = Path(out_dir), []
    for png in sorted(out_dir.glob("*.png")):
        family = family_of(png.stem, families)
        if family is None:
            continue
        caption = caption_html(Path(caption_dir) / FIGURE_FAMILIES[family].caption_file)
        title = f"{out_dir.name}: {png.stem}"
        with atomic_path(png.with_suffix(".html")) as tmp:
            tmp.write_text(figure_page(png, title, caption))
        written.append(png.with_suffix(".html"))
    return written
