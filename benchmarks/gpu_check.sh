#!/usr/bin/env bash
# The one prepared device check of issue 4: the offline default and the distill-step benchmark,
# bf16, on one GPU. Run from the repo root on a machine with torch + timm + accelerate + CUDA;
# wheels for what it lacks (diffusers) travel in .whl/ (see docs/architecture.md).
# Writes its logs under ${OUT:-gpu_check_out}/.
set -uo pipefail
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, timm, diffusers, accelerate; print('torch', torch.__version__, 'timm', timm.__version__, 'diffusers', diffusers.__version__, 'accelerate', accelerate.__version__, 'device', torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/device.txt"
for precision in bf16 no; do
  python3 benchmarks/distill_step.py --device cuda --mixed_precision "$precision" --batch_size 64 --steps 20 --warmup 3 2>&1 \
    | tee "$OUT/distill_step_$precision.txt"
done
start=$(date +%s)
accelerate launch --num_processes 1 --mixed_precision bf16 recipes/distill.py --output_dir "$OUT/offline_default" 2>&1 \
  | grep -v "it/s\]" | tee "$OUT/offline_default.txt"
echo "offline default wall seconds: $(( $(date +%s) - start ))" | tee -a "$OUT/offline_default.txt"
rm -rf "$OUT/offline_default"
