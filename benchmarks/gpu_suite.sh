#!/usr/bin/env bash
# Every GPU benchmark of issue 13 in one device call (<= 6 minutes on an H200), then one table.
#
#   bash benchmarks/gpu_suite.sh [--smoke] [OUT_DIR]      (OUT_DIR default: $OUT, else /tmp/gpu_suite)
#
# Steps, each bounded with `timeout` so one slow step cannot eat the call (seconds: 170 + 100 + 90
# = 360 at most; eval and matrix write what they have before their bound):
#   1. benchmarks/gpu_train.py  --budget-s 150: the harness trainer vs the HF Trainer, sets a and b;
#   2. benchmarks/gpu_eval.py:  label scoring at the worker's defaults vs lm-eval HFLM (or, where
#      lm-eval is absent as on the GPU machine, the per-pair scorer emulating its requests), and
#      batch-1 decode ms/token + warm-up seconds on the static compiled path;
#   3. benchmarks/gpu_matrix.py: the 12-cell demo matrix through `harness worker`, all at once,
#      from benchmarks/data/demo_cells.tar.gz (`python benchmarks/gpu_matrix.py prepare` writes it).
# Each writes its JSON (with a "table" key) and its log into OUT_DIR; the table printed last reads
# those JSON files (benchmarks/gpu_common.py table). --smoke runs everything tiny on the CPU.
# Needs python3 with torch, transformers and numpy only (PYTHON overrides the interpreter).
set -u
SMOKE=""
DEST="${OUT:-}"
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE="--smoke" ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) DEST="$arg" ;;
  esac
done
DEST="${DEST:-/tmp/gpu_suite}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
SCRATCH="$(mktemp -d /tmp/gpu_suite_scratch.XXXXXX)"
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
  TOKENIZERS_PARALLELISM=false HARNESS_CACHE_DIR="$SCRATCH/cache"
if [ -n "$SMOKE" ]; then export OMP_NUM_THREADS=1; fi
cd "$REPO" || exit 2

CELLS_ARG=()
if [ -z "$SMOKE" ]; then  # the demo's composed cells, carried compressed
  mkdir -p "$SCRATCH/cells"
  if tar xzf benchmarks/data/demo_cells.tar.gz -C "$SCRATCH/cells"; then
    CELLS_ARG=(--cells "$SCRATCH/cells")
  else
    echo "benchmarks/data/demo_cells.tar.gz missing: python benchmarks/gpu_matrix.py prepare" >&2
  fi
fi

STATUS=()
step() {  # step NAME SECONDS COMMAND...: run bounded, log to DEST/NAME.log, remember the status
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS
  echo "=== $name (at most ${limit} s): $*"
  timeout -k 10 "$limit" "$@" > "$DEST/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$DEST/$name.log"
  STATUS+=("$name rc=$rc $((SECONDS - t0))s$([ "$rc" = 124 ] && echo ' (timed out)')")
}

step gpu_train 170 "$PY" benchmarks/gpu_train.py --out "$DEST" $SMOKE --budget-s 150 "${CELLS_ARG[@]}"
step gpu_eval 100 "$PY" benchmarks/gpu_eval.py --out "$DEST" $SMOKE "${CELLS_ARG[@]}"
step gpu_matrix 90 "$PY" benchmarks/gpu_matrix.py --out "$DEST" $SMOKE --deadline-s 80 "${CELLS_ARG[@]}"

echo
echo "=== steps: ${STATUS[*]}"
"$PY" benchmarks/gpu_common.py table "$DEST"
for s in "${STATUS[@]}"; do case "$s" in *"rc=0 "*) ;; *) exit 1 ;; esac; done
