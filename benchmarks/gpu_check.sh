#!/usr/bin/env bash
# The GPU checks in one run: the smoke study on the device, training throughput (engine vs
# bare loop vs DataLoader loop; bf16 and channels_last on and off), the grid's cost model,
# and N small cells trained at once on one device vs the same cells one after another.
# Prints one table of the results and ratios at the end (also written to OUT/gpu_check.md).
#
#     bash benchmarks/gpu_check.sh --device cuda            # one GPU, under 8 minutes
#     bash benchmarks/gpu_check.sh --device cpu             # CI size: every step, reduced
#
# Options: --device cuda|cuda:N|cpu, --out DIR (default: a new temporary directory),
# --wheels DIR (wheels to install snakemake and captum from when they are missing; default
# ./wheels), --cells N (concurrent cells; default 4 on CUDA, 2 on a CPU).
# On a machine without this package installed it runs the sources: src/ on PYTHONPATH and
# a `largelr` command that calls `python3 -m largelr.cli`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEVICE=cuda
OUT=""
WHEELS="$ROOT/wheels"
CELLS=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --device) DEVICE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --cells) CELLS=$2; shift 2 ;;
        *) echo "gpu_check: unknown option $1" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PYTHON=${PYTHON:-python3}
if [[ $DEVICE == cpu ]]; then
    CELLS=${CELLS:-2}
    SMOKE_TARGET="results/smoke/tiny_parity/fcn/lr=0.05/seed=0/prune.parquet"
    # channels_last on and off are both measured on CUDA; the CI-size run keeps one layout
    THROUGHPUT=(--cases fcn@20 cnn:width=0.125@3x16x16 --steps 60 --conv-steps 5 --samples 500 --conv-samples 100 --rounds 1
                --amp off bf16 --channels-last off --history-every 10)
    GRID=(--studies smoke --seconds 1 --steps 30)
    CELL_STEPS=100
else
    CELLS=${CELLS:-4}
    SMOKE_TARGET=smoke
    THROUGHPUT=(--cases fcn@20 fcn@3x28x28 cnn@3x28x28 resnet18@3x28x28 --steps 300 --conv-steps 40 --samples 5000
                --conv-samples 2000 --rounds 3 --amp off bf16 --channels-last on off --history-every 1 10)
    GRID=(--seconds 1 --steps 60)
    CELL_STEPS=3000
fi

# --- what the run needs on a bare machine -------------------------------------------------
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c "import snakemake, captum" 2>/dev/null; then
    [[ -d $WHEELS ]] || { echo "gpu_check: snakemake/captum missing and no wheels in $WHEELS" >&2; exit 1; }
    "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS" --target "$OUT/site" snakemake captum
    export PYTHONPATH="$PYTHONPATH:$OUT/site"
    export PATH="$OUT/site/bin:$PATH"
fi
if ! command -v largelr >/dev/null; then
    mkdir -p "$OUT/bin"
    printf '#!/bin/sh\nexec %s -m largelr.cli "$@"\n' "$PYTHON" >"$OUT/bin/largelr"
    chmod +x "$OUT/bin/largelr"
    export PATH="$OUT/bin:$PATH"
fi
log() { echo "gpu_check: $*" >&2; }
seconds() { date +%s.%N; }

# --- 1. the smoke study on the device, in a copy of the workflow ----------------------------
WORK="$OUT/workflow"
mkdir -p "$WORK"
cp "$ROOT/Snakefile" "$ROOT/config.yaml" "$WORK/"
cp -r "$ROOT/workflow" "$ROOT/profiles" "$ROOT/envs" "$WORK/"
log "smoke study ($SMOKE_TARGET) on $DEVICE"
started=$(seconds)
smoke_status=ok
(cd "$WORK" && "$PYTHON" -m snakemake --cores "$(nproc)" "$SMOKE_TARGET" --config device="$DEVICE" \
    >"$OUT/smoke.log" 2>&1) || smoke_status=FAILED
smoke_s=$(awk -v a="$started" -v b="$(seconds)" 'BEGIN { printf "%.1f", b - a }')

# --- 2. training throughput -------------------------------------------------------------------
log "training throughput on $DEVICE"
"$PYTHON" "$ROOT/benchmarks/train_throughput.py" --device "$DEVICE" "${THROUGHPUT[@]}" | tee "$OUT/throughput.md"

# --- 3. the grid's cost model ---------------------------------------------------------------
log "grid cost on $DEVICE"
"$PYTHON" "$ROOT/benchmarks/grid_cost.py" --device "$DEVICE" "${GRID[@]}" --results "$WORK/results" \
    2>"$OUT/grid_cost.log" | tee "$OUT/grid_cost.md"

# --- 4. N cells at once on one device vs one after another ---------------------------------
log "$CELLS cells at once vs in sequence on $DEVICE"
"$PYTHON" - "$WORK" "$DEVICE" "$CELLS" "$CELL_STEPS" "$OUT/cells" >"$OUT/concurrency.md" <<'EOF'
"""N `largelr train` jobs (parity x FCN cells of the smoke study's dataset, N seeds) started at once,
then the same N one after another: wall time of each way and the mean training-only rate per cell."""
import json, subprocess, sys, time
from pathlib import Path

work, device, n, steps, out = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
data = work / "results/data/tiny_parity.pt"
if not data.exists():
    raise SystemExit(f"{data} missing: the smoke study did not build it")


def spec(seed: int) -> str:
    train = {"optimizer": "sgd", "lr": 0.05, "batch_size": 100, "max_steps": steps, "eval_every": steps,
             "target_train_acc": 1.1, "history_every": 10}
    return json.dumps({"study": "gpu_check", "dataset": "tiny_parity", "model": "fcn", "knob": "lr", "value": 0.05,
                       "seed": seed, "train": train, "model_params": {"depth": 3, "width": 200}})


def command(way: str, seed: int) -> list[str]:
    return ["largelr", "train", "--spec", spec(seed), "--data", str(data), "--out-dir", str(out / way / str(seed)),
            "--device", device]


def rate(way: str) -> float:
    rates = [json.loads((out / way / str(s) / "train.json").read_text())["summary"]["steps_per_s"] for s in range(n)]
    return sum(rates) / len(rates)


started = time.perf_counter()
for process in [subprocess.Popen(command("concurrent", s), stdout=subprocess.DEVNULL) for s in range(n)]:
    assert process.wait() == 0
concurrent = time.perf_counter() - started
started = time.perf_counter()
for s in range(n):
    subprocess.run(command("sequential", s), stdout=subprocess.DEVNULL, check=True)
sequential = time.perf_counter() - started
print(f"| {n} cells: wall s at once (value) vs one after another (reference); ratio = speed-up | {concurrent:.1f} | "
      f"{sequential:.1f} | {sequential / concurrent:.2f} |")
print(f"| {n} cells: training steps/s per cell at once vs alone | {rate('concurrent'):.0f} | {rate('sequential'):.0f} | "
      f"{rate('concurrent') / rate('sequential'):.2f} |")
EOF

# --- the table ----------------------------------------------------------------------------
{
    echo "## gpu_check on $DEVICE ($("$PYTHON" -c "import torch; print(torch.cuda.get_device_name() if '$DEVICE' != 'cpu' else 'CPU', end=', '); print('torch', torch.__version__)"))"
    echo
    echo "| check | value | reference | ratio |"
    echo "|---|---|---|---|"
    echo "| smoke study ($SMOKE_TARGET): $smoke_status, wall s | $smoke_s | | |"
    grep -E '^\| (fcn|cnn|resnet|wrn|swin)' "$OUT/throughput.md" | awk -F'|' '{
        for (i = 2; i <= 10; i++) gsub(/^ +| +$/, "", $i)
        printf "| throughput %s, %s: engine vs bare loop, steps/s | %s | %s | %s |\n", $2, $3, $4, $5, $7
        printf "| throughput %s, %s: engine vs bare loop with PlainSGD, steps/s | %s | %s | %s |\n", $2, $3, $4, $9, $10
        printf "| throughput %s, %s: engine vs DataLoader loop, steps/s | %s | %s | %s |\n", $2, $3, $4, $6, $8 }'
    grep -E '^\| \*\*total' "$OUT/grid_cost.md" | awk -F'|' '{
        gsub(/^ +| +$|\*/, "", $2); gsub(/ /, "", $7); printf "| grid cost, %s: device-hours | %s | | |\n", $2, $7 }'
    cat "$OUT/concurrency.md"
} | tee "$OUT/gpu_check.md"
[[ $smoke_status == ok ]] || { log "the smoke study failed: $OUT/smoke.log"; exit 1; }
