#!/usr/bin/env bash
# One command for the first GPU: the CUDA tests and every benchmark with its GPU settings,
# in under 8 minutes of one GPU, then the rows for docs/benchmarks.md.
#
#   bench/gpu.sh               # on a GPU machine: needs CUDA
#   bench/gpu.sh --dry-run     # the same steps on CPU with tiny sizes (a couple of minutes)
#   options: --budget SECONDS (default 470; dry run 300), --out DIR (default bench/results,
#            dry run bench/results/dry-run); PYTHON=... picks the interpreter
#
# Needs only what a bare GPU machine has: Python 3.12, PyTorch, torchvision, numpy, scipy,
# scikit-learn, matplotlib, pyyaml, pytest. No Ray, MLflow, Optuna or pydantic, no install:
# the repository goes on PYTHONPATH (tests/test_gpu_bench_imports.py keeps the benchmarks'
# imports inside that set). Wheels under .whl/ (git-ignored; e.g. pydantic's, fetched
# elsewhere with `pip download --only-binary=:all: --python-version 3.12 -d .whl pydantic`)
# are unpacked for the test step only, which then also runs the studies' CUDA tests.
#
# Each step runs under `timeout` (its own limit, cut to what is left of the budget); a step
# that fails or times out is reported and the next one runs; a step that no longer fits in
# the budget is skipped. Results: <out>/{epoch,methods,packing}.json, logs in <out>/logs/,
# a summary table at the end. Exit status 0 when every step passed, 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DRY=0
BUDGET=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --budget) BUDGET="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$DRY" = 1 ]; then
    BUDGET="${BUDGET:-300}"; OUT="${OUT:-bench/results/dry-run}"; DEVICE=cpu
else
    BUDGET="${BUDGET:-470}"; OUT="${OUT:-bench/results}"; DEVICE=cuda
fi
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
LOGS="$OUT/logs"

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT:$ROOT/bench${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg

START=$(date +%s)
NAMES=(); STATUS=(); SECONDS_TAKEN=(); FAILED=0

elapsed() { echo $(( $(date +%s) - START )); }

# step NAME LIMIT_SECONDS COMMAND...: run it under timeout, log it, record how it ended.
step() {
    local name="$1" limit="$2"; shift 2
    local left=$(( BUDGET - $(elapsed) ))
    local log="$LOGS/$name.log" rc=0 status t0
    if [ "$left" -lt 15 ]; then
        NAMES+=("$name"); STATUS+=("skipped: budget spent"); SECONDS_TAKEN+=("0"); FAILED=1
        echo "=== $name: skipped, ${left} s left of the ${BUDGET} s budget"
        return 0
    fi
    if [ "$limit" -gt "$left" ]; then limit="$left"; fi
    echo "=== $name (limit ${limit} s, $(elapsed) s of ${BUDGET} s used): $*"
    t0=$(date +%s)
    set +e
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    case "$rc" in
        0) status="ok" ;;
        124|137) status="timed out after ${limit} s"; FAILED=1 ;;
        *) status="failed (exit $rc)"; FAILED=1 ;;
    esac
    NAMES+=("$name"); STATUS+=("$status"); SECONDS_TAKEN+=("$(( $(date +%s) - t0 ))")
    echo "=== $name: $status"
}

# --- preflight: the interpreter, torch, the device -------------------------------------
set +e
"$PYTHON" - "$DEVICE" <<'EOF'
import platform, sys
import torch
print(f"python {platform.python_version()} ({sys.executable}), torch {torch.__version__}, "
      f"cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"gpu: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}")
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu.sh: no CUDA device here (use --dry-run for the CPU check)")
EOF
rc=$?
set -e
if [ "$rc" != 0 ]; then exit 2; fi

# --- the CUDA tests ---------------------------------------------------------------------
# The tests that run on CUDA when it is there (the rest of the suite is CI's job on CPU):
# normlib's CUDA test, and with pydantic importable (installed, or unpacked from .whl/) the
# studies' trainable tests (bf16, channels_last, compile, no host sync), which train on CUDA.
TEST_PATH="$PYTHONPATH"
if ls .whl/*.whl > /dev/null 2>&1; then
    SITE="$(mktemp -d)/site"
    for wheel in .whl/*.whl; do "$PYTHON" -m zipfile -e "$wheel" "$SITE"; done
    TEST_PATH="$PYTHONPATH:$SITE"
fi
TESTS=(tests/normlib/test_enorm.py::test_cuda_matches_cpu)
if PYTHONPATH="$TEST_PATH" "$PYTHON" -c "import pydantic" 2> /dev/null; then
    TESTS+=(tests/studies/test_precision.py)
else
    echo "gpu.sh: pydantic is not importable: tests/studies/test_precision.py is left out"
fi
if [ "$DRY" = 1 ]; then
    TESTS=(tests/normlib/test_enorm.py::test_cuda_matches_cpu)  # skips on CPU
fi
step tests 120 env PYTHONPATH="$TEST_PATH" "$PYTHON" -m pytest -q -p no:cacheprovider \
    "${TESTS[@]}"

# --- the benchmarks -----------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    step epoch 120 "$PYTHON" bench/epoch.py --device cpu --models fc-15x500 odenet4-16 \
        resnet18 --images 32 --batch 16 --repeats 1 --workers 1 \
        --variants fp32 bf16 channels_last --variant-models fc-15x500 --out "$OUT/epoch.json"
    step methods 60 "$PYTHON" bench/methods.py --device cpu --models fc-15x500 odenet4-16 \
        --batch 8 --repeats 2 --out "$OUT/methods.json"
    step packing 90 "$PYTHON" bench/packing.py --runner processes --device cpu \
        --model fc-15x500 --ks 1 2 --trials 2 --steps 2 --batch 8 --out "$OUT/packing.json"
else
    # our loop vs the seeds' loop; ResNet-18 also with bf16, channels_last, and all three
    # speed options with torch.compile (one compile: the slowest row to set up)
    step epoch 240 "$PYTHON" bench/epoch.py --device cuda \
        --models fc-15x500 odenet4-16 resnet18 --images 10000 --batch 128 --repeats 3 \
        --variants fp32 bf16 channels_last bf16+cl+compile --variant-models resnet18 \
        --out "$OUT/epoch.json"
    step methods 100 "$PYTHON" bench/methods.py --device cuda \
        --models fc-15x500 fullyconv odenet4-16 resnet18 wrn-16-4 --batch 128 --repeats 20 \
        --out "$OUT/methods.json"
    step packing 150 "$PYTHON" bench/packing.py --runner processes --device cuda \
        --model odenet4-16 --ks 1 2 4 8 --trials 16 --steps 200 --batch 128 \
        --out "$OUT/packing.json"
fi

# --- the rows for docs/benchmarks.md -----------------------------------------------------
step rows 30 "$PYTHON" bench/gpu_rows.py --results "$OUT"

echo
echo "gpu.sh summary ($([ "$DRY" = 1 ] && echo "dry run on CPU" || echo "CUDA"), $(elapsed) s of the ${BUDGET} s budget; logs in $LOGS)"
printf '%-8s  %6s  %s\n' step seconds status
for i in "${!NAMES[@]}"; do
    printf '%-8s  %6s  %s\n' "${NAMES[$i]}" "${SECONDS_TAKEN[$i]}" "${STATUS[$i]}"
done
ls "$OUT"/*.json 2> /dev/null | sed 's/^/wrote /' || true
exit "$FAILED"
