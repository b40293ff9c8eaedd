#!/usr/bin/env bash
# The prepared device check of the distillation step (issue 8): benchmarks/distill_step.py
# (supervised vs online vs cached step) on one GPU in fp32 and bf16, at batch 128 and 256,
# without and with --compile (the recipe's `compile: true`), then bf16 with channels_last.
# Run from the repo root on a machine with torch + timm + accelerate + CUDA; wheels for what it
# lacks (diffusers) travel in .whl/ (see benchmarks/device_env.sh). Each run's output is written to
# ${OUT:-gpu_check_out}/ as soon as it ends, so a cut-short check keeps what it measured.
# WITH_OFFLINE_DEFAULT=1 also runs the offline default recipe in bf16 (issue 4's check).
set -uo pipefail
OUT=${OUT:-gpu_check_out}
STEPS=${STEPS:-20}
mkdir -p "$OUT"
. benchmarks/device_env.sh || exit 1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, timm, diffusers, accelerate; print('torch', torch.__version__, 'timm', timm.__version__, 'diffusers', diffusers.__version__, 'accelerate', accelerate.__version__, 'device', torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/device.txt"

bench() {  # bench NAME ARGS...: one benchmark run, its output in $OUT/NAME.txt, its last lines in summary.txt
  local name=$1
  shift
  local start=$(date +%s)
  python3 benchmarks/distill_step.py --device cuda --steps "$STEPS" --warmup 3 "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  { echo "== $name ($*): rc $rc, $(( $(date +%s) - start )) s"; grep -E "step:|share|online /|cached /|^ratio" "$OUT/$name.txt" || tail -5 "$OUT/$name.txt"; } \
    | tee -a "$OUT/summary.txt"
}

for batch in 128 256; do
  for precision in no bf16; do
    bench "b${batch}_${precision}" --mixed_precision "$precision" --batch_size "$batch"
    bench "b${batch}_${precision}_compile" --mixed_precision "$precision" --batch_size "$batch" --compile
  done
done
bench b256_bf16_channels_last --mixed_precision bf16 --batch_size 256 --channels_last
bench b256_bf16_compile_channels_last --mixed_precision bf16 --batch_size 256 --compile --channels_last

if [ "${WITH_OFFLINE_DEFAULT:-0}" = 1 ]; then
  start=$(date +%s)
  accelerate launch --num_processes 1 --mixed_precision bf16 recipes/distill.py --output_dir "$OUT/offline_default" 2>&1 \
    | grep -v "it/s\]" | tee "$OUT/offline_default.txt"
  echo "offline default wall seconds: $(( $(date +%s) - start ))" | tee -a "$OUT/offline_default.txt"
  rm -rf "$OUT/offline_default"
fi
