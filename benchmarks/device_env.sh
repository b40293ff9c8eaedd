# Sourced by the prepared device scripts (gpu_check.sh, gpu_experiment.sh), from the repo root.
# A lent GPU machine is bare and offline: it has torch, timm and accelerate but may lack the rest.
# Wheels for what it lacks travel in .whl/ (an ignored folder named in the run's `carry`, filled
# here with `pip download --no-deps -d .whl diffusers safetensors huggingface_hub`); they are
# installed into /tmp/site and the repo itself is imported from the checkout.
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor_cache}
