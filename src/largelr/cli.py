"""``largelr <step>``: one thin subcommand per Snakemake rule.

Each subcommand parses paths and JSON settings, calls the science in the package and
writes its outputs atomically. Heavy imports happen inside the subcommands so that a
job pays only for what it uses.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from largelr.io import resolve_device, with_cell_keys, write_json, write_parquet


def _json(text: str) -> dict[str, Any]:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from error


def _setup(args: argparse.Namespace) -> torch.device:
    # No torch.use_deterministic_algorithms: the CPU kernels used here are deterministic
    # already (tests pin it), and the call imports torch's compiler stack (~1.5 s a job).
    torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def cmd_data(args: argparse.Namespace) -> None:
    from largelr.data import SPLIT_NAMES, build_dataset, save_dataset

    try:
        dataset = build_dataset(args.kind, args.params, args.data_root, args.seed)
    except ValueError as error:  # a bad parameter or a malformed data file: the message says which
        raise SystemExit(f"largelr data: dataset {args.name!r} ({args.kind}): {error}") from None
    dataset["name"] = args.name
    save_dataset(dataset, args.out)
    sizes = {split: len(dataset[split]["y"]) for split in SPLIT_NAMES if split in dataset}
    print(f"{args.name}: built {args.kind} with {sizes}, input {dataset['input_shape']} -> {args.out}")


def cmd_card(args: argparse.Namespace) -> None:
    from largelr.cards import write_card
    from largelr.data import load_dataset

    write_card(load_dataset(args.data), args.json, args.png)
    print(f"wrote {args.json} and {args.png}")


def cmd_train(args: argparse.Namespace) -> None:
    from largelr.data import load_dataset
    from largelr.io import provenance
    from largelr.models import save_checkpoint
    from largelr.train import train_cell

    device = _setup(args)
    spec = args.spec
    dataset = load_dataset(args.data)
    print(f"training {spec['study']}/{spec['dataset']}/{spec['model']} {spec['knob']}={spec['value']} seed={spec['seed']} on {device}")
    out = Path(args.out_dir)
    # The checkpoint lives beside the declared outputs: a preempted job resumes from it.
    checkpoint = out / "checkpoint.pt"
    model, history, summary = train_cell(spec, dataset, device, log=lambda line: print(line, flush=True),
                                         checkpoint=checkpoint, checkpoint_every=args.checkpoint_every)
    cell = {key: spec[key] for key in ("study", "dataset", "model", "knob", "value", "seed")}
    save_checkpoint(model, summary["model_spec"], out / "model.pt")
    write_parquet(with_cell_keys(history, cell, device), out / "history.parquet")
    # train.json last: its presence marks the cell as trained.
    write_json({"cell": cell, "spec": spec, "summary": summary, "provenance": provenance(device)}, out / "train.json")
    checkpoint.unlink(missing_ok=True)
    reason = f" ({summary['diverged_reason']} at step {summary['diverged_step']})" if summary["diverged"] else ""
    print(f"done: {summary['stopped_by']}{reason} after {summary['steps']} steps, "
          f"test acc {summary.get('test_acc', math.nan):.4f}")


ANALYSES = ("prune", "represent", "attribute")
NAN_METRICS = {
    "represent": ["compressibility", "sparsity", "pq_index", "csi", "bsi", "class_sep", "bias_sep"],
    "attribute": ["attribution_entropy", "ig_max_abs_delta", "spurious_share", "core_share",
                  "background_share", "background_iou"],
}


def prune_table(model, dataset, settings, device, kind: str) -> pd.DataFrame:
    from largelr.data import sample_indices
    from largelr.prune import iter_test_batches, pruning_metric, restrict_test_split, retention_curves

    kappas = [float(k) for k in settings["kappas"]]
    metric = pruning_metric(dataset, kind)
    methods = list(settings["prune_methods"])
    # the paper's curve on the whole test set; the extra curves on a fixed subset (cost, see README)
    n_test = len(dataset["test"]["y"])
    extra_samples = settings["prune_extra_samples"] or n_test
    groups = [["structured"] if "structured" in methods else [], [m for m in methods if m != "structured"]]
    curves = []
    for group, samples in zip(groups, (n_test, extra_samples)):
        if not group:
            continue
        part = dataset if samples >= n_test else restrict_test_split(dataset, sample_indices(n_test, samples, seed=0))
        batches = iter_test_batches(part, device, settings["eval_batch_size"])
        curves.append(retention_curves(model, batches, kappas=kappas, methods=group, metric=metric))
    table = pd.concat(curves, ignore_index=True)
    return table.set_index("method").loc[methods].reset_index()  # in the settings' order


def represent_table(model, dataset, settings, device, kind: str) -> pd.DataFrame:
    from largelr.attribute import sample_test_inputs
    from largelr.data import sample_indices
    from largelr.represent import summarize

    idx = sample_indices(len(dataset["test"]["y"]), settings["represent_samples"], seed=0)
    x, y, b = sample_test_inputs(dataset, idx)
    with torch.no_grad():
        z = torch.cat([model.features(x[i : i + settings["eval_batch_size"]].to(device)).cpu()
                       for i in range(0, len(x), settings["eval_batch_size"])])
    metrics = summarize(z, y, b, q=settings["compress_q"], kappa=settings["compress_kappa"], eps=settings["csi_eps"])
    return pd.DataFrame([metrics])


def attribute_table(model, dataset, settings, device, kind: str, segmenter=None) -> pd.DataFrame:
    from largelr.attribute import summarize

    return pd.DataFrame([summarize(model, dataset, settings, device, kind=kind, segmenter=segmenter)])


def diverged_table(name: str, settings: dict[str, Any]) -> pd.DataFrame:
    """A diverged cell has no meaningful analyses: same columns, NaN values."""
    if name == "prune":
        from largelr.prune import CURVE_COLUMNS

        kappas = [float(k) for k in settings["kappas"]]
        rows = [{"method": method, "kappa": k, "test_inputs": 0} for method in settings["prune_methods"] for k in kappas]
        return pd.DataFrame(rows, columns=CURVE_COLUMNS).astype({c: "float64" for c in CURVE_COLUMNS[2:6]} | {"test_inputs": "int64"})
    return pd.DataFrame([dict.fromkeys(NAN_METRICS[name], math.nan)])


def _checked_segmenter(settings: dict[str, Any], kind: str, device: torch.device):
    """The segmenter the settings ask for (None for none/oracle), checked before any heavy work."""
    from largelr.attribute import SEGMENTER_CHOICES, resolve_background

    source = resolve_background(settings.get("background", "auto"), kind, settings.get("ig_baseline", "zero"))
    if source not in SEGMENTER_CHOICES:
        return None
    from largelr.segment import load_segmenter

    return load_segmenter(source, settings.get("segmenter_checkpoint", ""), device)


def cmd_analyze(args: argparse.Namespace) -> None:
    from largelr.data import load_dataset
    from largelr.models import load_checkpoint
    from largelr.segment import SegmenterMissingError

    device = _setup(args)
    cell_dir = Path(args.cell_dir)
    record = json.loads((cell_dir / "train.json").read_text())
    diverged = record["summary"]["diverged"]
    settings = {**_analysis_defaults(), **args.settings}
    kind = args.kind or record["cell"]["dataset"]
    segmenter = None
    if not diverged:
        if "attribute" in args.steps:
            try:  # a missing segmenter is the user's fix: fail before loading data and model
                segmenter = _checked_segmenter(settings, kind, device)
            except (SegmenterMissingError, ValueError) as error:
                raise SystemExit(f"largelr analyze: {error}") from None
        model = load_checkpoint(cell_dir / "model.pt", device)
        dataset = load_dataset(args.data)
    for name in args.steps:
        started = time.perf_counter()
        if diverged:
            table = diverged_table(name, settings)
        elif name == "attribute":
            table = attribute_table(model, dataset, settings, device, kind, segmenter)
        else:
            table = {"prune": prune_table, "represent": represent_table}[name](model, dataset, settings, device, kind)
        write_parquet(with_cell_keys(table, record["cell"], device), cell_dir / f"{name}.parquet")
        print(f"{name} ({time.perf_counter() - started:.2f} s):")
        print(table.to_string(index=False))


def _analysis_defaults() -> dict[str, Any]:
    from largelr.config import ANALYSIS_DEFAULTS

    return dict(ANALYSIS_DEFAULTS)


def cmd_hilo(args: argparse.Namespace) -> None:
    import numpy as np

    from largelr.attribute import hilo_maps
    from largelr.data import load_dataset
    from largelr.io import atomic_path
    from largelr.models import load_checkpoint

    device = _setup(args)
    settings = {**_analysis_defaults(), **args.settings}
    dataset = load_dataset(args.data)
    models = {name: [load_checkpoint(path, device) for path in paths]
              for name, paths in (("low", args.models_low), ("high", args.models_high))}
    arrays = hilo_maps(models["low"], models["high"], dataset, settings, device, args.lr_low, args.lr_high)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    print(f"hilo: {len(arrays['indices'])} samples right in > {settings['hilo_high_threshold']:.0%} of "
          f"{len(args.models_high)} models at lr={args.lr_high} and < {settings['hilo_low_threshold']:.0%} of "
          f"{len(args.models_low)} at lr={args.lr_low} -> {args.out}")


def cmd_aggregate(args: argparse.Namespace) -> None:
    from largelr import aggregate

    cells = aggregate.build_cells(args.train_json)
    write_parquet(cells, args.out_cells)
    study = cells["study"].iloc[0]
    table = aggregate.table1(cells)
    aggregate.write_table(table, args.out_table1, f"{study}: min and max over the usable range (Table 1 shape)",
                          aggregate.paper_shape(table))
    stats = aggregate.seed_statistics(cells)
    aggregate.write_table(stats, args.out_stats, f"{study}: mean, sd and 95% t-interval over seeds")
    mechanism = aggregate.mechanism_table(cells)
    aggregate.write_table(mechanism, args.out_mechanism, f"{study}: Pearson r, max BC loss ratio vs test accuracy")
    write_parquet(aggregate.prune_curves(args.train_json), args.out_curves)
    write_parquet(aggregate.dynamics(args.train_json), args.out_dynamics)
    print(f"{len(cells)} cells ({int((~cells['in_range']).sum())} outside the usable range) -> {args.out_cells}")
    print(table.to_string(index=False))
    print(mechanism.to_string(index=False))


def cmd_paper_tables(args: argparse.Namespace) -> None:
    from largelr import aggregate

    if args.out_table1:
        cells = pd.concat([pd.read_parquet(path) for path in args.table1_cells], ignore_index=True)
        table = aggregate.table1(cells)
        aggregate.write_table(table, args.out_table1, "Table 1: min and max over the usable learning-rate range",
                              aggregate.paper_shape(table))
        compare = aggregate.compare_with_paper(table)
        aggregate.write_table(compare, args.out_compare, "Our Table 1 beside the paper's (diff = ours - paper)")
        print(compare.to_string(index=False))
    if args.out_table2:
        interventions = pd.concat([pd.read_parquet(path) for path in args.table2_cells], ignore_index=True)
        lr_rows = [pd.read_parquet(path) for path in args.table1_cells]
        cells = pd.concat([interventions, *lr_rows], ignore_index=True)
        table = aggregate.table2(cells, sorted(interventions["study"].unique()))
        aggregate.write_table(table, args.out_table2, "Table 2: interventions, min and max over each knob's range",
                              aggregate.paper_shape(table, knob_label="knob values"))
        print(table.to_string(index=False))


FIGURE_KINDS = ("normalized", "pruning", "dynamics", "mechanism", "interventions", "hilo")


def cmd_figure(args: argparse.Namespace) -> None:
    from largelr import figures

    def needs(*names: str) -> None:
        for name in names:
            if getattr(args, name) in (None, []):
                raise SystemExit(f"largelr figure --kind {args.kind}: --{name.replace('_', '-')} is required")

    needs("out")
    if args.kind != "hilo":
        needs("cells")
        cells = pd.concat([pd.read_parquet(path) for path in args.cells], ignore_index=True)
    if args.kind in ("normalized", "pruning", "dynamics", "interventions", "hilo"):
        needs("dataset", "model")
    if args.kind == "normalized":
        figures.pair_figure(cells, args.dataset, args.model, args.out)
    elif args.kind == "pruning":
        needs("curves")
        figures.pruning_figure(pd.read_parquet(args.curves), cells, args.dataset, args.model, args.out)
    elif args.kind == "dynamics":
        needs("history")
        figures.dynamics_figure(pd.read_parquet(args.history), cells, args.dataset, args.model, args.out)
    elif args.kind == "mechanism":
        needs("mechanism")
        figures.mechanism_figure(cells, pd.read_parquet(args.mechanism), args.out)
    elif args.kind == "interventions":
        figures.intervention_grid(cells, args.dataset, args.model, args.out)
    else:
        needs("hilo", "study", "n_seeds")
        figures.hilo_figure(args.hilo, args.study, args.dataset, args.model, args.n_seeds, args.out)
    print(f"wrote {' '.join(args.out)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="largelr", description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)

    def compute_step(name: str, func, helptext: str) -> argparse.ArgumentParser:
        step = steps.add_parser(name, help=helptext)
        step.set_defaults(func=func)
        step.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        step.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
        step.add_argument("--data", required=True, help="dataset file from `largelr data`")
        return step

    data = steps.add_parser("data", help="build a dataset file")
    data.set_defaults(func=cmd_data)
    data.add_argument("--name", required=True)
    data.add_argument("--kind", required=True, help="construction, e.g. parity, colored_digits")
    data.add_argument("--params", type=_json, default={})
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--data-root", default="data")
    data.add_argument("--out", required=True)

    card = steps.add_parser("card", help="dataset card: sizes, group counts, realized rho, sample grid")
    card.set_defaults(func=cmd_card)
    card.add_argument("--data", required=True, help="dataset file from `largelr data`")
    card.add_argument("--json", required=True)
    card.add_argument("--png", required=True)

    train = compute_step("train", cmd_train, "train one cell")
    train.add_argument("--spec", type=_json, required=True, help="cell spec JSON (largelr.config.cell_spec)")
    train.add_argument("--out-dir", required=True)
    train.add_argument("--checkpoint-every", type=int, default=1000, help="steps between resume checkpoints")

    analyze = compute_step("analyze", cmd_analyze, "prune, represent and attribute one trained cell")
    analyze.add_argument("--cell-dir", required=True, help="the cell's directory; tables are written there")
    analyze.add_argument("--settings", type=_json, required=True, help="analysis settings JSON")
    analyze.add_argument("--steps", nargs="+", choices=ANALYSES, default=list(ANALYSES))
    analyze.add_argument("--kind", default="", help="dataset construction (oracle background, pruning metric); "
                         "default: the dataset's name")

    hilo = compute_step("hilo", cmd_hilo, "hi/lo learning-rate attribution maps of one (study, dataset, model)")
    hilo.add_argument("--models-low", nargs="+", required=True, help="model.pt of every seed at the low lr")
    hilo.add_argument("--models-high", nargs="+", required=True, help="model.pt of every seed at the high lr")
    hilo.add_argument("--lr-low", type=float, required=True)
    hilo.add_argument("--lr-high", type=float, required=True)
    hilo.add_argument("--settings", type=_json, default={}, help="analysis settings JSON (hilo_*, ig_*)")
    hilo.add_argument("--out", required=True, help="the .npz file to write")

    aggregate = steps.add_parser("aggregate", help="one study's cells -> cells.parquet, its tables and figure inputs")
    aggregate.set_defaults(func=cmd_aggregate)
    aggregate.add_argument("--train-json", nargs="+", required=True, help="train.json of every cell of the study")
    aggregate.add_argument("--out-cells", required=True)
    aggregate.add_argument("--out-table1", required=True, help="min/max table (Markdown written beside)")
    aggregate.add_argument("--out-stats", required=True, help="mean, sd, 95%% CI over seeds (Markdown beside)")
    aggregate.add_argument("--out-mechanism", required=True, help="Pearson r table (Markdown beside)")
    aggregate.add_argument("--out-curves", required=True, help="all pruning curves")
    aggregate.add_argument("--out-dynamics", required=True, help="all histories, thinned")

    paper = steps.add_parser("paper-tables", help="Tables 1 and 2 across studies, and the comparison with the paper")
    paper.set_defaults(func=cmd_paper_tables)
    paper.add_argument("--table1-cells", nargs="*", default=[], help="cells.parquet of the Table 1 studies")
    paper.add_argument("--table2-cells", nargs="*", default=[], help="cells.parquet of the intervention studies")
    paper.add_argument("--out-table1", help="with --out-compare: Table 1 and compare_paper")
    paper.add_argument("--out-compare")
    paper.add_argument("--out-table2")

    figure = steps.add_parser("figure", help="one paper figure (see --kind)")
    figure.set_defaults(func=cmd_figure)
    figure.add_argument("--kind", choices=FIGURE_KINDS, default="normalized")
    figure.add_argument("--cells", nargs="+", help="cells.parquet (several for --kind interventions)")
    figure.add_argument("--curves", help="the study's prune_curves.parquet (--kind pruning)")
    figure.add_argument("--history", help="the study's dynamics.parquet (--kind dynamics)")
    figure.add_argument("--mechanism", help="the study's mechanism table (--kind mechanism)")
    figure.add_argument("--hilo", help="hi/lo attribution npz (--kind hilo)")
    figure.add_argument("--study", help="study name (--kind hilo)")
    figure.add_argument("--n-seeds", type=int, help="seeds per learning rate (--kind hilo)")
    figure.add_argument("--dataset")
    figure.add_argument("--model")
    figure.add_argument("--out", nargs="+", required=True, help="output files; format from suffix (.png, .pdf)")
    return parser


def main(argv: list[str] | None = None) -> None:
    from largelr.bases import DataMissingError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DataMissingError as error:  # a user's fix, not a bug: no traceback
        raise SystemExit(f"largelr {args.step}: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
