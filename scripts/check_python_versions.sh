#!/usr/bin/env bash
# Python 3.12 and 3.13 (or the versions given): the wheel built from this tree installs in a fresh venv,
# with its dependencies resolved from the package index, imports, and a zoo model runs a forward pass
# (plain timm after `import repfusion_zoo` too). CI stays on README's Python 3.11; this is run by hand,
# because each Python downloads its own torch (several GB: the index's Linux torch is a CUDA build).
#
#   bash scripts/check_python_versions.sh            # 3.12 and 3.13
#   bash scripts/check_python_versions.sh 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/repfusion-pythons.XXXXXX")
python3.11 -m pip wheel --quiet --no-deps --wheel-dir "$work/wheel" .
wheel=$(ls "$work"/wheel/repfusion_zoo-*.whl)
for version in "${@:-3.12 3.13}"; do
  for v in $version; do
    python=""
    for candidate in "python$v" "$HOME"/.pyenv/versions/"$v"*/bin/"python$v"; do
      if "$candidate" -c "" 2>/dev/null; then python=$candidate; break; fi
    done
    if [ -z "$python" ]; then echo "python$v: not found (install it, e.g. with pyenv)"; exit 1; fi
    "$python" -m venv "$work/py$v"
    "$work/py$v/bin/pip" install --quiet "$wheel"
    "$work/py$v/bin/python" - <<'PY'
import sys, timm, torch, repfusion_zoo
model = repfusion_zoo.create_model("resnet18_repfusion_cifar10", num_classes=10).eval()
with torch.no_grad():
    out = timm.create_model("resnet18_repfusion_cifar10", num_classes=10)(torch.rand(1, 3, 32, 32))
print(f"Python {sys.version.split()[0]}: repfusion-zoo {repfusion_zoo.__version__}, torch {torch.__version__}, "
      f"timm {timm.__version__}: import and forward OK, logits {tuple(out.shape)}")
PY
  done
done
rm -rf "$work"
