"""The command line's front door: arguments checked before any work, and every error as one line.

:func:`check_arguments` refuses what argparse cannot see (a device that does not exist, zero
threads, a file that is missing or not of its kind, a train spec without its keys) with a
:class:`UsageError` naming the flag; :func:`failure` turns any error into an exit code and one
line: 2 when the command line is wrong, 1 when the run failed (a damaged file, a full disk).
"""

from __future__ import annotations

import argparse
import errno
import re
from pathlib import Path
from typing import Any


class UsageError(ValueError):
    """A bad argument; the message names the flag, the value and what it takes (exit code 2)."""


DEVICE_PATTERN = r"auto|cpu|cuda(:[0-9]+)?"
# Per subcommand, the flags naming files it reads and what each must be: "parquet" (a table an earlier
# step wrote), "file", "dir". Dataset files (--data) are checked by their loader, which names the
# command that rebuilds a damaged one.
INPUTS: dict[str, dict[str, str]] = {
    "card": {"data": "file"},
    "train": {"data": "file"},
    "analyze": {"data": "file", "cell_dir": "dir"},
    "hilo": {"data": "file", "models_low": "file", "models_high": "file"},
    "aggregate": {"train_json": "file"},
    "paper-tables": {"table1_cells": "parquet", "table2_cells": "parquet"},
    "summary": {"cells": "parquet"},
    "figures": {"cells": "parquet", "curves": "parquet", "dynamics": "parquet", "mechanism": "parquet", "hilo": "file"},
    "intervention-figure": {"cells": "parquet"},
}
# Where each kind of input comes from, for the message.
MAKERS = {
    "cells": "`largelr aggregate` (snakemake --cores all <study>)",
    "data": "`largelr data`",
    "cell_dir": "`largelr train`",
    "train_json": "`largelr train`",
}
SPEC_KEYS = ("study", "dataset", "model", "knob", "value", "seed", "train", "model_params")
COUNTS = ("threads", "workers", "checkpoint_every")  # flags that take a whole number >= 1


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """argparse's errors (a missing flag, a bad value) as one line, without the usage block, in
    ``parser`` and its subcommands."""

    def error(message: str, prog: str = parser.prog) -> None:
        import sys

        print(f"{prog}: {message} (see {prog} --help)", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for sub in getattr(action, "choices", {}).values():
            one_line_errors(sub)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_arguments(args: argparse.Namespace) -> None:
    """UsageError for the first argument that cannot work, before anything is read or written."""
    device = getattr(args, "device", None)
    if device is not None and not re.fullmatch(DEVICE_PATTERN, device):
        raise UsageError(f"--device {device}: not a device; allowed: auto, cpu, cuda or cuda:N")
    for name in COUNTS:
        if (value := getattr(args, name, None)) is not None and value < 1:
            raise UsageError(f"{flag(name)} {value}: allowed: a whole number >= 1")
    if args.step == "train" and (missing := [key for key in SPEC_KEYS if key not in args.spec]):
        raise UsageError(
            f"--spec: missing keys {missing}; give the JSON of largelr.config.cell_spec, as the "
            "workflow's train rule does (snakemake -p shows its command)"
        )
    for name, kind in INPUTS.get(args.step, {}).items():
        value = getattr(args, name, None)
        for path in value if isinstance(value, list) else [value] if value else []:
            check_input(name, Path(path), kind)


def check_input(name: str, path: Path, kind: str) -> None:
    made_by = MAKERS.get(name, "the workflow step that writes it")
    if not path.exists():
        raise UsageError(f"{flag(name)} {path}: no such file or directory; give the file {made_by} writes")
    if kind == "dir" and not path.is_dir():
        raise UsageError(f"{flag(name)} {path}: not a directory; give the cell's directory")
    if kind in ("file", "parquet") and path.is_dir():
        raise UsageError(f"{flag(name)} {path}: a directory; give a file {made_by} writes")
    if kind == "parquet":
        import pyarrow
        import pyarrow.parquet

        try:
            pyarrow.parquet.ParquetFile(path).close()
        except (OSError, pyarrow.ArrowException) as error:
            raise UsageError(
                f"{flag(name)} {path}: not a readable Parquet table ({str(error).splitlines()[0]}); "
                f"give the table {made_by} writes, or rerun that step if the file is damaged"
            ) from None


def failure(error: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an error: 2 for a bad argument, 1 for a failed run."""
    from largelr.checks import SettingError
    from largelr.datasets import DamagedDatasetError, DataMissingError
    from largelr.io import DamagedCellError

    if isinstance(error, UsageError):
        return 2, str(error)
    if isinstance(error, (DataMissingError, DamagedCellError, DamagedDatasetError, SettingError)):
        return 1, str(error)
    if isinstance(error, OSError):
        return 1, os_failure(error)
    try:
        import pyarrow

        if isinstance(error, pyarrow.ArrowException):
            return 1, f"a Parquet table could not be read or written: {first_line(error)}"
    except ImportError:
        pass
    return 1, f"{type(error).__name__}: {first_line(error)} (run again with --debug for the traceback)"


def os_failure(error: OSError) -> str:
    where = f"{error.filename}: " if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"{where}no space left on the device; free space (df -h) and rerun: finished outputs are kept"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}{error.strerror}; make the folder writable (or readable) and rerun"
    if isinstance(error, FileNotFoundError):
        return f"{where}no such file or directory; check the path, or rerun the workflow step that writes it"
    return f"{where}{error.strerror or first_line(error)}"


def first_line(error: Any) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
