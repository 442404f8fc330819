"""Progress of a training run: step out of the cap, elapsed wall time and the time left.

Every evaluation line of a cell's log (``largelr.training.loop``) ends with this, e.g.
``step    200/1000 (20%)  loss ...  elapsed 0:00:12  eta 0:00:48``. The estimate assumes the remaining steps
run at the pace of the steps this process has run so far, evaluations included; a cell that
fits its training set before the cap stops earlier, so the ETA is an upper bound.
"""

from __future__ import annotations

import math
import re


def eta_seconds(step: int, max_steps: int, resumed_from: int, elapsed_s: float) -> float:
    """Seconds to reach ``max_steps`` at the pace since ``resumed_from``: (cap - step) x elapsed / steps run.

    NaN before any step has run in this process (no pace yet).
    """
    run = step - resumed_from
    if run <= 0 or elapsed_s < 0:
        return math.nan
    return max(max_steps - step, 0) * elapsed_s / run


def clock(seconds: float) -> str:
    """H:MM:SS (days as extra hours); '?' when unknown."""
    if not math.isfinite(seconds):
        return "?"
    total = int(round(seconds))
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def step_text(step: int, max_steps: int) -> str:
    """``step/cap (pct)``, the step right-aligned as the log always wrote it."""
    return f"{step:>6}/{max_steps} ({100 * step / max_steps:.0f}%)"


def time_text(step: int, max_steps: int, resumed_from: int, elapsed_s: float) -> str:
    """``elapsed H:MM:SS  eta H:MM:SS`` for a log line."""
    return f"elapsed {clock(elapsed_s)}  eta {clock(eta_seconds(step, max_steps, resumed_from, elapsed_s))}"


LINE = re.compile(r"^step\s+(?P<step>\d+)/(?P<cap>\d+)\b.*\belapsed (?P<elapsed>[\d:]+)\s+eta (?P<eta>[\d:]+|\?)")


def parse_clock(text: str) -> float:
    """Seconds of an H:MM:SS text written by ``clock``; NaN for '?'."""
    if text == "?":
        return math.nan
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def last_progress(log_text: str) -> dict[str, float] | None:
    """The last progress line of a training log: step, cap, elapsed_s, eta_s; None when there is none."""
    for line in reversed(log_text.splitlines()):
        if match := LINE.match(line):
            return {
                "step": int(match["step"]),
                "cap": int(match["cap"]),
                "elapsed_s": parse_clock(match["elapsed"]),
                "eta_s": parse_clock(match["eta"]),
            }
    return None
