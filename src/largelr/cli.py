"""``largelr <step>``: argument parsing only, one subcommand per Snakemake rule.

Each subcommand parses paths and JSON settings and calls one function of the package, which
does the work and writes its outputs atomically. Heavy imports happen inside the subcommands
so that a job pays only for what it uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from largelr.cli_outputs import add_landscape_step, add_output_steps
from largelr.io import resolve_device


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'not a JSON object ({{"key": value, ...}}): {text!r}')
    return value


def _setup(args: argparse.Namespace) -> torch.device:
    # No torch.use_deterministic_algorithms: the CPU kernels used here are deterministic
    # already (tests pin it), and the call imports torch's compiler stack (~1.5 s a job).
    torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def cmd_data(args: argparse.Namespace) -> None:
    from largelr.datasets import SPLIT_NAMES, build_dataset, save_dataset
    from largelr.datasets.cards import write_card

    try:
        dataset = build_dataset(args.kind, args.params, args.data_root, args.seed, name=args.name)
    except ValueError as error:  # a bad parameter or a malformed data file: the message says which
        raise SystemExit(f"largelr data: dataset {args.name!r} ({args.kind}): {error}") from None
    save_dataset(dataset, args.out)
    sizes = {split: len(dataset[split]["y"]) for split in SPLIT_NAMES if split in dataset}
    print(f"{args.name}: built {args.kind} with {sizes}, input {dataset['input_shape']} -> {args.out}")
    if args.card_json:
        write_card(dataset, args.card_json, args.card_png)
        print(f"wrote {args.card_json} and {args.card_png}")


def cmd_card(args: argparse.Namespace) -> None:
    from largelr.datasets import load_dataset
    from largelr.datasets.cards import write_card

    write_card(load_dataset(args.data), args.json, args.png)
    print(f"wrote {args.json} and {args.png}")


def cmd_train(args: argparse.Namespace) -> None:
    from largelr.train import train_and_save

    train_and_save(args.spec, args.data, Path(args.out_dir), _setup(args), args.checkpoint_every)


def cmd_analyze(args: argparse.Namespace) -> None:
    from largelr.analyses import analyze_cell
    from largelr.analyses.segment import SegmenterMissingError
    from largelr.config import ANALYSIS_FILES, TRAIN_FILES, AnalysisSettings
    from largelr.io import check_cell, with_cell_keys, write_parquet

    device = _setup(args)
    cell_dir = Path(args.cell_dir)
    settings = AnalysisSettings(args.settings, where="analysis")
    cell = check_cell(cell_dir)["cell"]  # a damaged train.json is removed and named, not a JSON traceback

    def write(name: str, table) -> None:
        write_parquet(with_cell_keys(table, cell, device), cell_dir / ANALYSIS_FILES[name])

    try:
        analyze_cell(
            cell_dir / TRAIN_FILES["summary"],
            cell_dir / TRAIN_FILES["model"],
            args.data,
            settings,
            device,
            args.steps,
            write,
        )
    except SegmenterMissingError as error:  # the user's fix, reported before data and model are read
        raise SystemExit(f"largelr analyze: {error}") from None


def cmd_hilo(args: argparse.Namespace) -> None:
    from largelr.analyses.hilo import write_hilo
    from largelr.config import AnalysisSettings

    write_hilo(
        args.models_low,
        args.models_high,
        args.data,
        AnalysisSettings(args.settings, where="analysis"),
        _setup(args),
        args.lr_low,
        args.lr_high,
        args.out,
    )


def cmd_status(args: argparse.Namespace) -> None:
    from largelr.status import merged_config, status_report

    config = merged_config([args.config, *args.configfile])
    print(
        status_report(
            config, args.study, Path(args.root), jobs=args.jobs, active_s=args.active_minutes * 60, show_done=args.all
        )
    )


def cmd_download(args: argparse.Namespace) -> None:
    from largelr.download import download

    hub_dir = Path(args.hub_dir) if args.hub_dir else Path(torch.hub.get_dir())
    failed = download(args.names, Path(args.data_root), hub_dir)
    if failed:
        raise SystemExit(f"largelr download: {failed} of {len(args.names)} item(s) failed (see above)")


def add_download_step(steps) -> None:
    from largelr.download import NAMES  # torch-free to import

    download = steps.add_parser("download", help="fetch datasets (md5-checked) and weights; manual steps for the rest")
    download.set_defaults(func=cmd_download)
    download.add_argument("names", nargs="+", choices=NAMES, metavar="NAME", help=f"one or more of {', '.join(NAMES)}")
    download.add_argument("--data-root", default="data", help="config.yaml's data_root")
    download.add_argument("--hub-dir", default=None, help="torch hub directory (default: torch.hub.get_dir())")


def cmd_gpu_slot(args: argparse.Namespace) -> None:
    from largelr.gpu_slots import exec_on_slot

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    exec_on_slot(command, args.per_gpu, Path(args.lock_dir) if args.lock_dir else None)


def add_gpu_slot_step(steps) -> None:
    slot = steps.add_parser(
        "gpu-slot", help="run a command on a free GPU slot (CUDA_VISIBLE_DEVICES), held while it runs"
    )
    slot.set_defaults(func=cmd_gpu_slot)
    slot.add_argument("--per-gpu", type=int, default=1, help="slots per GPU (several small cells per GPU)")
    slot.add_argument("--lock-dir", default=None, help="folder of the slot lock files (default: in the temp folder)")
    slot.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")


def add_compute_step(steps, name: str, func, helptext: str) -> argparse.ArgumentParser:
    step = steps.add_parser(name, help=helptext)
    step.set_defaults(func=func)
    step.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    step.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    step.add_argument("--data", required=True, help="dataset file from `largelr data`")
    return step


def add_data_steps(steps) -> None:
    data = steps.add_parser("data", help="build a dataset file (and its card)")
    data.set_defaults(func=cmd_data)
    data.add_argument("--name", required=True, help="the dataset's name in config.yaml (recorded in the file)")
    data.add_argument("--kind", required=True, help="construction, e.g. parity, colored_digits")
    data.add_argument("--params", type=_json, default={}, help="the dataset's parameters as JSON (default: {})")
    data.add_argument("--seed", type=int, default=0, help="seed of the dataset's random draw (default: 0)")
    data.add_argument("--data-root", default="data", help="folder of downloaded raw data (default: data)")
    data.add_argument("--out", required=True, help="the dataset file (.pt) to write")
    data.add_argument("--card-json", help="also write the dataset card's JSON here")
    data.add_argument("--card-png", help="and its sample grid here")

    card = steps.add_parser("card", help="dataset card: sizes, group counts, realized rho, sample grid")
    card.set_defaults(func=cmd_card)
    card.add_argument("--data", required=True, help="dataset file from `largelr data`")
    card.add_argument("--json", required=True, help="the card's JSON file to write")
    card.add_argument("--png", required=True, help="the card's sample grid (PNG) to write")


def add_cell_steps(steps) -> None:
    from largelr.analyses import ANALYSES

    train = add_compute_step(steps, "train", cmd_train, "train one cell")
    train.add_argument("--spec", type=_json, required=True, help="cell spec JSON (largelr.config.cell_spec)")
    train.add_argument("--out-dir", required=True, help="the cell's folder; model.pt, history, predictions, train.json")
    train.add_argument("--checkpoint-every", type=int, default=1000, help="steps between resume checkpoints")

    analyze = add_compute_step(steps, "analyze", cmd_analyze, "prune, represent and attribute one trained cell")
    analyze.add_argument("--cell-dir", required=True, help="the cell's directory; tables are written there")
    analyze.add_argument("--settings", type=_json, required=True, help="analysis settings JSON")
    analyze.add_argument(
        "--steps", nargs="+", choices=list(ANALYSES), default=list(ANALYSES), help="analyses to run (default: all)"
    )

    add_low_high_step(
        steps,
        "hilo",
        cmd_hilo,
        "hi/lo learning-rate attribution maps of one (study, dataset, model)",
        {
            "models": ("model.pt of every seed at the {group} lr", {"nargs": "+"}),
            "lr": ("the {group} learning rate (for the record)", {"type": float}),
        },
        "analysis settings JSON (hilo_*, ig_*)",
    )


def cmd_training_maps(args: argparse.Namespace) -> None:
    from largelr.config import AnalysisSettings
    from largelr.over_training import write_training_maps

    device = _setup(args)
    write_training_maps(
        args.data,
        {"low": args.spec_low, "high": args.spec_high},
        {"low": args.model_low, "high": args.model_high},
        {"low": args.summary_low, "high": args.summary_high},
        AnalysisSettings(args.settings, where="analysis"),
        device,
        args.out,
    )


def add_training_maps_step(steps) -> None:
    add_low_high_step(
        steps,
        "training-maps",
        cmd_training_maps,
        "Figs 13, 28: IG maps and neuron selectivity over training, low and high value",
        {
            "spec": ("the {group} cell's spec JSON", {"type": _json}),
            "model": ("the {group} cell's model.pt", {}),
            "summary": ("the {group} cell's train.json", {}),
        },
    )


def add_low_high_step(
    steps,
    name: str,
    func,
    helptext: str,
    flags: dict[str, tuple[str, dict[str, Any]]],
    settings_help: str = "analysis settings JSON",
) -> argparse.ArgumentParser:
    """A step on a study's low and high value: ``--<flag>-low`` and ``--<flag>-high`` for each flag
    (help with ``{group}``, argparse options), then ``--settings`` and the ``--out`` npz file."""
    step = add_compute_step(steps, name, func, helptext)
    for flag, (text, options) in flags.items():
        for group in ("low", "high"):
            step.add_argument(f"--{flag}-{group}", required=True, help=text.format(group=group), **options)
    step.add_argument("--settings", type=_json, default={}, help=settings_help)
    step.add_argument("--out", required=True, help="the .npz file to write")
    return step


def add_status_command(steps) -> None:
    status = steps.add_parser(
        "status",
        help="a study's cells: done / running / failed / missing, and the time left",
        description="Which cells of STUDY are done, running, failed or missing, from their "
        "files and training logs, and the training time left (largelr.status). Run it in "
        "the workflow's folder, as snakemake.",
    )
    status.set_defaults(func=cmd_status)
    status.add_argument("study", help="a study of the config, e.g. demo")
    status.add_argument("--config", default="config.yaml", help="the workflow's config (default: config.yaml)")
    status.add_argument(
        "--configfile", nargs="*", default=[], help="overlays merged over it, as given to snakemake --configfile"
    )
    status.add_argument("--root", default=".", help="the folder holding results/ (default: .)")
    status.add_argument("--jobs", type=int, default=1, help="jobs run at once, to divide the time left (default: 1)")
    status.add_argument(
        "--active-minutes",
        type=float,
        default=30.0,
        help="a log silent for longer counts as a failed (stopped) job (default: 30)",
    )
    status.add_argument("--all", action="store_true", help="list the done cells too")


# The commands a person runs; every other subcommand is a step that a Snakemake rule calls.
USER_COMMANDS = ("summary", "status", "download", "card")


def command_listing(steps) -> str:
    """The --help epilog: the user-facing commands apart from the rule steps, each with its help."""
    helps = {action.dest: action.help for action in steps._choices_actions}
    width = max(map(len, helps)) + 2

    def rows(names) -> list[str]:
        return [f"  {name:<{width}}{helps[name]}" for name in names]

    user = [name for name in USER_COMMANDS if name in helps]
    rule_steps = [name for name in helps if name not in USER_COMMANDS]
    return "\n".join(
        [
            "commands for you:",
            *rows(user),
            "",
            "steps the workflow's rules run (snakemake calls them):",
            *rows(rule_steps),
            "",
            "`largelr COMMAND --help` describes each one's flags.",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="largelr",
        usage="largelr [-h] COMMAND ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The largelr pipeline's command line: the commands below, and one step per Snakemake rule.",
    )
    steps = parser.add_subparsers(dest="step", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
    add_data_steps(steps)
    add_download_step(steps)
    add_gpu_slot_step(steps)
    add_cell_steps(steps)
    add_output_steps(steps, _json)
    add_landscape_step(steps)
    add_training_maps_step(steps)
    add_status_command(steps)
    parser.epilog = command_listing(steps)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one subcommand. A bad argument or an unreadable file ends in one line on stderr (what,
    which file, what to do) and exit code 2 (the command line) or 1 (the run); ``--debug``, anywhere
    on the line, shows the traceback instead."""
    from largelr.front import check_arguments, failure, one_line_errors

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="on an error, show the Python traceback")
    one_line_errors(parser)
    args = parser.parse_args([arg for arg in argv if arg != "--debug"])
    try:
        check_arguments(args)
        args.func(args)
    except Exception as error:  # noqa: BLE001  (the front door: every error becomes one line)
        if debug:
            raise
        code, message = failure(error)
        if code == 1:
            raise SystemExit(f"largelr {args.step}: {message}") from None
        print(f"largelr {args.step}: {message}", file=sys.stderr)
        raise SystemExit(code) from None


if __name__ == "__main__":
    sys.exit(main())
