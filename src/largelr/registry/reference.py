"""docs/reference.md, written from the records: every model, dataset kind, analysis, figure family,
study table and config key with its default, what it allows and what it means.

    python -m largelr.registry.reference        # from the repository root: rewrite docs/reference.md

``tests/test_registry.py`` compares the checked-in page with this output, so a new record (or a
changed default) shows up in the docs with the change that made it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from largelr.checks import Setting
from largelr.config_settings import STUDY_KEYS, TOP_KEYS, TRAIN_KEYS
from largelr.registry.analyses import ANALYSES, STUDY_STEPS, AnalysisRecord
from largelr.registry.figures import FIGURE_FAMILIES
from largelr.registry.kinds import KINDS
from largelr.registry.models import COST_RULES, MODELS
from largelr.registry.tables import STUDY_TABLES


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def default_text(setting: Setting) -> str:
    return f"`{json.dumps(setting.default)}`"


def settings_table(settings: Mapping[str, Setting], what: str = "key") -> list[str]:
    if not settings:
        return ["(none)"]
    return table(
        [what, "default", "allowed", "meaning"],
        ([f"`{key}`", default_text(s), s.allowed(), s.doc] for key, s in settings.items()),
    )


def models_section() -> list[str]:
    lines = ["## Models", "", "Records: `src/largelr/registry/models.py`; recipe: [extending.md](extending.md).", ""]
    costs = " / ".join(COST_RULES)
    rows = []
    for name, record in MODELS.items():
        traits = [trait for trait in ("autocast", "gpu_shared") if getattr(record, trait)]
        cost = " / ".join(f"{record.cost[rule].runtime} min, {record.cost[rule].mem_mb} MB" for rule in COST_RULES)
        params = ", ".join(f"`{key}`" for key in record.params) or "-"
        rows.append([f"`{name}`", record.doc, params, ", ".join(traits) or "-", cost])
    lines += table(["model", "what", "parameters", "traits", f"Slurm {costs}"], rows)
    for name, record in MODELS.items():
        if record.params:
            lines += ["", f"Parameters of `{name}` (`model_params: {{{name}: {{...}}}}`):", ""]
            lines += settings_table(record.params, "parameter")
    return lines


def kinds_section() -> list[str]:
    lines = ["## Dataset kinds", "", "Records: `src/largelr/registry/kinds.py`; layouts: [datasets.md](datasets.md)."]
    for name, kind in KINDS.items():
        traits = [trait for trait, on in kind.traits.items() if on] + (["flat inputs"] if kind.flat_inputs else [])
        files = "checked under `data_root` at parse time" if kind.missing_check else "none needed"
        facts = f"files: {files}; traits: {', '.join(traits) or 'none'}"
        lines += ["", f"### `{name}`", "", f"{kind.doc} ({facts})", ""]
        lines += settings_table(kind.params, "parameter")
    return lines


def analysis_block(record: AnalysisRecord) -> list[str]:
    lines = ["", f"### `{record.name}`", "", f"{record.doc} (`{record.implementation}`)."]
    if record.columns:
        lines += ["", "Columns: " + ", ".join(f"`{column}`" for column in record.columns) + "."]
    return [*lines, "", *settings_table(record.settings, "setting")]


def analyses_section() -> list[str]:
    lines = [
        "## Analyses",
        "",
        "Records: `src/largelr/registry/analyses.py`. Settings go under a study's `analysis:` (or the",
        "top-level `analysis:` block). Cell analyses (one `<name>.parquet` per cell):",
    ]
    for record in ANALYSES.values():
        lines += analysis_block(record)
    lines += ["", "Study steps:"]
    for record in STUDY_STEPS.values():
        lines += analysis_block(record)
    return lines


def figures_section() -> list[str]:
    lines = [
        "## Figure families",
        "",
        "Records: `src/largelr/registry/figures.py`; files under `results/figures/<study>/`.",
        "",
    ]
    rows = []
    for name, family in FIGURE_FAMILIES.items():
        when = f"analysis `{family.setting}: true`" if family.setting else "always"
        rows.append(
            [
                f"`{name}`",
                f"`{family.stem}`",
                ", ".join(family.inputs),
                "pair" if family.per_pair else "study",
                family.category,
                f"`{family.caption_file}`",
                when,
            ]
        )
    return lines + table(["family", "file stem", "reads", "one per", "report category", "caption", "drawn"], rows)


def tables_section() -> list[str]:
    lines = [
        "## Study tables",
        "",
        "Records: `src/largelr/registry/tables.py`; files `results/tables/<study>_<stem>.*`.",
        "",
    ]
    rows = [
        [f"`{name}`", f"`{t.stem}`", t.what, "parquet, md" + (", tex" if t.latex else "")]
        for name, t in STUDY_TABLES.items()
    ]
    return lines + table(["table", "stem", "what", "formats"], rows)


def config_section() -> list[str]:
    return [
        "## Config keys",
        "",
        "Declared in `src/largelr/config_settings.py`; checks: [configuration.md](configuration.md).",
        "",
        "### Top level",
        "",
        *settings_table(TOP_KEYS),
        "",
        "### A study",
        "",
        *settings_table(STUDY_KEYS),
        "",
        "### Training (a study's or a grid block's `train:`)",
        "",
        *settings_table(TRAIN_KEYS),
    ]


def reference_markdown() -> str:
    sections = [models_section(), kinds_section(), analyses_section(), figures_section(), tables_section()]
    lines = [
        "# Reference",
        "",
        "Every record the workflow is built from, with its defaults. Generated from the records by",
        "`python -m largelr.registry.reference`; do not edit by hand (a test compares).",
    ]
    for section in [*sections, config_section()]:
        lines += ["", *section]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    page = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/reference.md")
    page.write_text(reference_markdown())
    print(f"wrote {page}", file=sys.stderr)
