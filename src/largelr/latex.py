"""LaTeX renderings of the paper tables, written beside their Markdown (same name, ``.tex``).

Each file is a ``tabular`` (booktabs rules: ``\\usepackage{booktabs}``) to ``\\input`` into a
``table`` environment of one's own; its title and note come first as comments. Cells hold what the
Markdown holds, with the paper's layout: one row per (dataset, model), one ``min -- max`` column per
variable (the en dash of the Markdown becomes ``--``). ``read_latex_table`` parses a file back.
"""

from __future__ import annotations

import re

import pandas as pd

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
}
UNSPECIAL = {latex: text for text, latex in SPECIAL.items()}


def escape(text: str) -> str:
    """``text`` as LaTeX source: its special characters escaped, the en dash as ``--``."""
    return "".join(SPECIAL.get(char, char) for char in text)


def unescape(source: str) -> str:
    """The inverse of ``escape``."""
    pattern = "|".join(re.escape(latex) for latex in sorted(UNSPECIAL, key=len, reverse=True))
    return re.sub(pattern, lambda match: UNSPECIAL[match.group(0)], source)


def latex_table(frame: pd.DataFrame, title: str = "", note: str = "", format_cell=str) -> str:
    """``frame`` as a booktabs ``tabular``: text columns left-aligned, numeric ones right-aligned."""
    align = "".join(
        "r" if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) else "l"
        for c in frame.columns
    )
    comments = [f"% {line}" for line in (title.splitlines() + note.splitlines()) if line.strip()]
    header = " & ".join(escape(str(c)) for c in frame.columns) + r" \\"
    body = [" & ".join(escape(format_cell(v)) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    return (
        "\n".join(
            [
                *comments,
                rf"\begin{{tabular}}{{{align}}}",
                r"\toprule",
                header,
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
            ]
        )
        + "\n"
    )


def read_latex_table(source: str) -> pd.DataFrame:
    """A table written by ``latex_table`` read back as text cells (column names from its header)."""
    rows = [line for line in source.splitlines() if line.endswith(r"\\")]
    cells = [[unescape(cell.strip()) for cell in re.split(r"(?<!\\)&", line[:-2])] for line in rows]
    return pd.DataFrame(cells[1:], columns=cells[0])
