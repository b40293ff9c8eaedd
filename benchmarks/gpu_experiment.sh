#!/usr/bin/env bash
# The prepared device run of the CIFAR-10 experiment (issue 9) on one GPU, about 10 minutes:
#   1. CIFAR-10 from $ARCHIVE (carried: cp ../shared/datasets/cifar10-jpeg.tar.gz .device/);
#   2. a teacher of the google/ddpm-cifar10-32 architecture (35.7 M parameters), $TEACHER_STEPS
#      steps in bf16 with recipes/configs/teacher_cifar10.yaml (a short warm-up and EMA);
#   3. recipes/experiment.py with recipes/configs/experiments/cifar10_gpu_short.yaml on it,
#      stopped after $EXPERIMENT_SECONDS so that what finished comes back within the call.
# Run from the repo root: `OUT=$OUT bash benchmarks/gpu_experiment.sh` (through the device tool: fill
# .device/ and .whl/ here, carry both, timeout 600 s). What comes back (7 files):
# device.txt, teacher.txt, experiment.txt, arm_results.jsonl (every finished arm-seed's
# result.json, one a line) and, once every arm-seed is done, cifar10_gpu_short.{json,md,png}.
# Rerun while the machine is warm to resume: the teacher, the cache and finished arm-seeds are kept
# in $WORK and a killed recipe continues from its last checkpoint.
set -uo pipefail
OUT=${OUT:-gpu_experiment_out}
WORK=${WORK:-/tmp/gpu_experiment}
ARCHIVE=${ARCHIVE:-.device/cifar10-jpeg.tar.gz}
TEACHER_STEPS=${TEACHER_STEPS:-2000}
EXPERIMENT_SECONDS=${EXPERIMENT_SECONDS:-420}
LAUNCH=${LAUNCH:-accelerate launch --num_processes 1 --mixed_precision bf16}
CONFIG=${CONFIG:-recipes/configs/experiments/cifar10_gpu_short.yaml}
mkdir -p "$OUT" "$WORK"
. benchmarks/device_env.sh || exit 1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; date; } > "$OUT/device.txt" 2>&1

if [ ! -d "$WORK/cifar10/train" ]; then
  mkdir -p "$WORK/cifar10" && tar xzf "$ARCHIVE" -C "$WORK/cifar10" || { echo "no CIFAR-10 archive at $ARCHIVE" >&2; exit 1; }
fi

start=$(date +%s)
$LAUNCH recipes/train_teacher.py --config recipes/configs/teacher_cifar10.yaml \
  --dataset "imagefolder:$WORK/cifar10" --output_dir "$WORK/teacher" --reuse true \
  --max_train_steps "$TEACHER_STEPS" --lr_warmup_steps 300 --ema_max_decay 0.999 \
  --checkpointing_steps 1000 --resume_from_checkpoint latest --report_to "" --num_samples 0 2>&1 \
  | grep --line-buffered -v "it/s\]" > "$OUT/teacher.txt"
echo "teacher: rc ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/device.txt"

start=$(date +%s)
timeout --signal=TERM --kill-after=20 "$EXPERIMENT_SECONDS" python3 recipes/experiment.py --config "$CONFIG" \
  --dataset "$WORK/cifar10" --teacher "$WORK/teacher" --launcher "$LAUNCH" \
  --output_dir "$WORK/experiment" --results_dir "$OUT" 2>&1 | grep --line-buffered -v "it/s\]" > "$OUT/experiment.txt"
echo "experiment: rc ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s" | tee -a "$OUT/device.txt"
find "$WORK/experiment/runs" -name result.json -exec sh -c 'tr -d "\n" < "$1"; echo' _ {} \; > "$OUT/arm_results.jsonl" 2>/dev/null
ls "$OUT"
