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
    from largelr.data import build_dataset, save_dataset

    dataset = build_dataset(args.kind, args.params, args.data_root, args.seed)
    dataset["name"] = args.name
    save_dataset(dataset, args.out)
    sizes = {split: len(dataset[split]["y"]) for split in ("train", "test")}
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
    print(f"done: {summary['stopped_by']} after {summary['steps']} steps, test acc {summary.get('test_acc', math.nan):.4f}")


ANALYSES = ("prune", "represent", "attribute")
NAN_METRICS = {
    "represent": ["compressibility", "sparsity", "pq_index", "csi", "bsi", "class_sep", "bias_sep"],
    "attribute": ["attribution_entropy", "ig_max_abs_delta", "spurious_share", "core_share"],
}


def prune_table(model, dataset, settings, device) -> pd.DataFrame:
    from largelr.prune import retention_curve

    test = dataset["test"]
    x, y = test["x"].to(device), test["y"].to(device)
    kappas = [float(k) for k in settings["kappas"]]
    curves = [retention_curve(model, x, y, kappas=kappas, method=method).assign(method=method)
              for method in settings["prune_methods"]]
    return pd.concat(curves, ignore_index=True)


def represent_table(model, dataset, settings, device) -> pd.DataFrame:
    from largelr.data import sample_indices
    from largelr.represent import summarize

    test = dataset["test"]
    idx = sample_indices(len(test["y"]), settings["represent_samples"], seed=0)
    with torch.no_grad():
        z = model.features(test["x"][idx].to(device)).cpu()
    metrics = summarize(z, test["y"][idx], test["b"][idx], q=settings["compress_q"],
                        kappa=settings["compress_kappa"], eps=settings["csi_eps"])
    return pd.DataFrame([metrics])


def attribute_table(model, dataset, settings, device) -> pd.DataFrame:
    from largelr.attribute import summarize

    return pd.DataFrame([summarize(model, dataset, settings, device)])


def diverged_table(name: str, settings: dict[str, Any]) -> pd.DataFrame:
    """A diverged cell has no meaningful analyses: same columns, NaN values."""
    if name == "prune":
        kappas = [float(k) for k in settings["kappas"]]
        return pd.DataFrame([{"kappa": k, "accuracy": math.nan, "retention": math.nan, "pruned_fraction": math.nan,
                              "method": method} for method in settings["prune_methods"] for k in kappas])
    return pd.DataFrame([dict.fromkeys(NAN_METRICS[name], math.nan)])


def cmd_analyze(args: argparse.Namespace) -> None:
    from largelr.data import load_dataset
    from largelr.models import load_checkpoint

    device = _setup(args)
    cell_dir = Path(args.cell_dir)
    record = json.loads((cell_dir / "train.json").read_text())
    diverged = record["summary"]["diverged"]
    if not diverged:
        model = load_checkpoint(cell_dir / "model.pt", device)
        dataset = load_dataset(args.data)
    tables = {"prune": prune_table, "represent": represent_table, "attribute": attribute_table}
    for name in args.steps:
        started = time.perf_counter()
        table = diverged_table(name, args.settings) if diverged else tables[name](model, dataset, args.settings, device)
        write_parquet(with_cell_keys(table, record["cell"], device), cell_dir / f"{name}.parquet")
        print(f"{name} ({time.perf_counter() - started:.2f} s):")
        print(table.to_string(index=False))


def cmd_aggregate(args: argparse.Namespace) -> None:
    from largelr.aggregate import build_cells, table1

    cells = build_cells(args.train_json)
    write_parquet(cells, args.out_cells)
    table = table1(cells)
    write_parquet(table, args.out_table1)
    print(f"{len(cells)} cells ({int((~cells['in_range']).sum())} outside the usable range) -> {args.out_cells}")
    print(table.to_string(index=False))


def cmd_figure(args: argparse.Namespace) -> None:
    from largelr.figures import pair_figure

    cells = pd.read_parquet(args.cells)
    pair_figure(cells, args.dataset, args.model, args.out)
    print(f"wrote {args.out}")


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

    aggregate = steps.add_parser("aggregate", help="cells -> cells.parquet and Table 1")
    aggregate.set_defaults(func=cmd_aggregate)
    aggregate.add_argument("--train-json", nargs="+", required=True)
    aggregate.add_argument("--out-cells", required=True)
    aggregate.add_argument("--out-table1", required=True)

    figure = steps.add_parser("figure", help="normalized multi-variable figure of one (dataset, model)")
    figure.set_defaults(func=cmd_figure)
    figure.add_argument("--cells", required=True, help="the study's cells.parquet")
    figure.add_argument("--dataset", required=True)
    figure.add_argument("--model", required=True)
    figure.add_argument("--out", required=True)
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
