"""What the workflow builds, derived from the records (torch-free; workflow/rules/common.smk calls it).

- the targets and dry-run flag of the ``snakemake`` command line (Snakemake sets its DAG targets
  and executor only after the Snakefile is parsed, so they are read with Snakemake's own parser);
- the studies those targets build;
- each study's figure families, figure files and table files (largelr.registry);
- the low and high values of a pair's maps, and the parse-time note on missing data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from largelr.registry.figures import FIGURE_FAMILIES, FigureFamily
from largelr.registry.tables import STUDY_TABLES

Pair = tuple[str, str]


def snakemake_arguments(argv: Sequence[str]) -> Any | None:
    """``argv`` parsed with Snakemake's parser when it is a ``snakemake`` command line, else None
    (Snakemake's Python API, or an unreadable line: never fail here, Snakemake reports it)."""
    if not argv:
        return None
    program = Path(argv[0])
    if "snakemake" not in (program.name, program.parent.name):
        return None
    from snakemake.cli import get_argument_parser

    try:
        args, _ = get_argument_parser().parse_known_args(list(argv[1:]))
    except (SystemExit, Exception):  # noqa: BLE001
        return None
    return args


def command_line_targets(argv: Sequence[str]) -> list[str]:
    """The targets named on a ``snakemake`` command line ([] for none, or another program)."""
    args = snakemake_arguments(argv)
    return [str(target) for target in (getattr(args, "targets", None) or ())]


def command_line_dry_run(argv: Sequence[str]) -> bool:
    """Whether a ``snakemake`` command line asks for a dry run (-n, --dry-run)."""
    return bool(getattr(snakemake_arguments(argv), "dryrun", False))


def requested_studies(targets: Sequence[str], studies: Iterable[str], default_studies: Sequence[str]) -> list[str]:
    """Studies the given targets build: a study's name (or its figures_ rule), a path under
    results/<study>/ or results/figures/<study>/, a study table; the default target (no target,
    or `all`) builds the default studies. Other targets (a dataset) build none."""
    if not targets or "all" in targets:
        return list(default_studies)
    studies = list(studies)
    named = []
    for target in targets:
        parts = target.split("/")
        for study in studies:
            if (
                target in (study, f"figures_{study}")
                or parts[:2] == ["results", study]
                or parts[:3] == ["results", "figures", study]
                or (parts[:2] == ["results", "tables"] and parts[-1].split(".")[0].rsplit("_", 1)[0] == study)
            ):
                named.append(study)
    return list(dict.fromkeys(named))


def map_pairs(settings: Mapping[str, Any], pairs: Sequence[Pair], switch: str) -> list[Pair]:
    """The pairs whose maps the study draws when the analysis setting ``switch`` (hilo,
    training_maps) is on: every pair, or those of the models in ``hilo_models``."""
    if not settings.get(switch):
        return []
    models = settings.get("hilo_models")
    return [(dataset, model) for dataset, model in pairs if models is None or model in models]


def pair_source(family: FigureFamily) -> str:
    """Which pairs a family is drawn for: its npz source's ("hilo", "training_maps") or the study's."""
    return family.npz or "study"


def study_families(pairs: Mapping[str, Sequence[Pair]], settings: Mapping[str, Any]) -> list[str]:
    """The families a study draws, in the records' order: those with pairs to draw (``pairs``: pair
    source -> pairs) whose analysis setting, if any, is on."""
    return [
        name
        for name, family in FIGURE_FAMILIES.items()
        if pairs.get(pair_source(family)) and (not family.setting or settings.get(family.setting))
    ]


def figure_stems(family: str, pairs: Sequence[Pair]) -> list[str]:
    """The family's file stems: one per pair, or its one fixed name."""
    record = FIGURE_FAMILIES[family]
    if not record.per_pair:
        return [record.stem]
    return sorted({record.file_stem(dataset, model) for dataset, model in pairs})


def study_figure_files(
    study: str, pairs: Mapping[str, Sequence[Pair]], settings: Mapping[str, Any], formats: Sequence[str]
) -> list[tuple[str, str, list[str]]]:
    """(family, stem, files) of every figure of the study: the files under results/figures/<study>/."""
    figures = []
    for family in study_families(pairs, settings):
        for stem in figure_stems(family, pairs[pair_source(FIGURE_FAMILIES[family])]):
            figures.append((family, stem, [f"results/figures/{study}/{stem}.{suffix}" for suffix in formats]))
    return figures


def study_table_files(study: str) -> list[str]:
    """Every table file of the study: each record's Parquet, Markdown, and LaTeX where written."""
    return [table.path(study, suffix) for table in STUDY_TABLES.values() for suffix in table.suffixes()]


def hilo_values(
    values: Iterable[str],
    low: float | None,
    high: float | None,
    format_value: Callable[[float], str],
    where: tuple[str, str, str],
) -> list[str]:
    """(low, high) knob values of a pair (``where``: study, dataset, model) as path text: the
    settings hilo_low / hilo_high where given, else the pair's smallest / largest value."""
    values = sorted(set(values), key=float)
    study, dataset, model = where
    chosen = []
    for key, value, default in (("hilo_low", low, values[0]), ("hilo_high", high, values[-1])):
        text = default if value is None else format_value(value)
        if text not in values:
            raise ValueError(
                f"config.yaml: analysis {key} = {value!r} (study {study}) is not a value of "
                f"({dataset}, {model}); allowed: {values}. Fix it in config.yaml."
            )
        chosen.append(text)
    return chosen


def missing_data_report(
    study_datasets: Mapping[str, Sequence[str]],
    missing_reason: Callable[[str], str | None],
    data_root: str,
    dry_run: bool,
) -> str:
    """One block ("" when nothing is missing): each study that cannot run (fully or in part)
    because data is missing, then each missing dataset with the files it needs."""
    absent: dict[str, None] = {}
    lines = []
    for study, datasets in study_datasets.items():
        missing = [d for d in datasets if missing_reason(d) is not None]
        if missing:
            present = [d for d in datasets if missing_reason(d) is None]
            part = "cannot run" if not present else "runs in part"
            lines.append(f"  {study}: {part}, missing {', '.join(missing)}")
            absent.update(dict.fromkeys(missing))
    if not lines:
        return ""
    header = f"largelr: data missing under data_root={data_root!r}. Studies that cannot run (fully or in part):"
    footer = (
        "  Their `data` jobs fail with these messages; the other studies are built (add\n"
        "  --keep-going so the failures do not stop them); the paper tables use only studies\n"
        "  whose data is present. Missing datasets:"
    )
    reasons = [f"  - {d}: {missing_reason(d)}" for d in absent]
    if dry_run:
        reasons.append(
            "  Dry run: the plan below is each study's whole plan; without -n only the parts\n"
            "  whose data is present are built."
        )
    return "\n".join([header, *lines, footer, *reasons])
