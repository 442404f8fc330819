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
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    return device


def _read_cell(cell_dir: Path) -> dict[str, Any]:
    return json.loads((cell_dir / "train.json").read_text())


def cmd_data(args: argparse.Namespace) -> None:
    from largelr.data import build_dataset, save_dataset

    dataset = build_dataset(args.kind, args.params, args.data_root, args.seed)
    dataset["name"] = args.name
    save_dataset(dataset, args.out)
    sizes = {split: len(dataset[split]["y"]) for split in ("train", "test")}
    print(f"{args.name}: built {args.kind} with {sizes}, input {dataset['input_shape']} -> {args.out}")


def cmd_train(args: argparse.Namespace) -> None:
    from largelr.data import load_dataset
    from largelr.io import provenance
    from largelr.models import save_checkpoint
    from largelr.train import train_cell

    device = _setup(args)
    spec = args.spec
    dataset = load_dataset(args.data)
    print(f"training {spec['study']}/{spec['dataset']}/{spec['model']} {spec['knob']}={spec['value']} seed={spec['seed']} on {device}")
    model, history, summary = train_cell(spec, dataset, device, log=lambda line: print(line, flush=True))
    out = Path(args.out_dir)
    cell = {key: spec[key] for key in ("study", "dataset", "model", "knob", "value", "seed")}
    save_checkpoint(model, summary["model_spec"], out / "model.pt")
    write_parquet(with_cell_keys(history, cell, device), out / "history.parquet")
    # train.json last: its presence marks the cell as trained.
    write_json({"cell": cell, "spec": spec, "summary": summary, "provenance": provenance(device)}, out / "train.json")
    print(f"done: {summary['stopped_by']} after {summary['steps']} steps, test acc {summary.get('test_acc', math.nan):.4f}")


def _load_for_analysis(args: argparse.Namespace):
    from largelr.data import load_dataset
    from largelr.models import load_checkpoint

    device = _setup(args)
    cell_dir = Path(args.cell_dir)
    record = _read_cell(cell_dir)
    model = load_checkpoint(cell_dir / "model.pt", device)
    return device, record, model, load_dataset(args.data)


def cmd_prune(args: argparse.Namespace) -> None:
    from largelr.prune import retention_curve

    device, record, model, dataset = _load_for_analysis(args)
    kappas = [float(k) for k in args.settings["kappas"]]
    if record["summary"]["diverged"]:
        curve = pd.DataFrame({"kappa": kappas, "accuracy": math.nan, "retention": math.nan, "pruned_fraction": math.nan})
    else:
        test = dataset["test"]
        curve = retention_curve(model, test["x"].to(device), test["y"].to(device), kappas=kappas, method="structured")
    curve.insert(0, "method", "structured")
    write_parquet(with_cell_keys(curve, record["cell"], device), args.out)
    print(f"prunability {curve['retention'].mean():.4f}")


def cmd_represent(args: argparse.Namespace) -> None:
    from largelr.attribute import sample_indices
    from largelr.represent import summarize

    device, record, model, dataset = _load_for_analysis(args)
    settings = args.settings
    test = dataset["test"]
    idx = sample_indices(len(test["y"]), settings["represent_samples"], seed=0)
    if record["summary"]["diverged"]:
        metrics = dict.fromkeys(["compressibility", "sparsity", "pq_index", "csi", "bsi", "class_sep", "bias_sep"], math.nan)
    else:
        with torch.no_grad():
            z = model.features(test["x"][idx].to(device)).cpu()
        metrics = summarize(z, test["y"][idx], test["b"][idx], q=settings["compress_q"],
                            kappa=settings["compress_kappa"], eps=settings["csi_eps"])
    write_parquet(with_cell_keys(pd.DataFrame([metrics]), record["cell"], device), args.out)
    print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def cmd_attribute(args: argparse.Namespace) -> None:
    from largelr.attribute import summarize

    device, record, model, dataset = _load_for_analysis(args)
    if record["summary"]["diverged"]:
        metrics = dict.fromkeys(["attribution_entropy", "ig_max_abs_delta", "spurious_share", "core_share"], math.nan)
    else:
        metrics = summarize(model, dataset, args.settings, device)
    write_parquet(with_cell_keys(pd.DataFrame([metrics]), record["cell"], device), args.out)
    print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


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

    train = compute_step("train", cmd_train, "train one cell")
    train.add_argument("--spec", type=_json, required=True, help="cell spec JSON (largelr.config.cell_spec)")
    train.add_argument("--out-dir", required=True)

    for name, func in (("prune", cmd_prune), ("represent", cmd_represent), ("attribute", cmd_attribute)):
        step = compute_step(name, func, f"{name} analysis of one trained cell")
        step.add_argument("--cell-dir", required=True)
        step.add_argument("--settings", type=_json, required=True, help="analysis settings JSON")
        step.add_argument("--out", required=True)

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
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
