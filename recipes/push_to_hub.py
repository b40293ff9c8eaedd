#!/usr/bin/env python
"""Publish a Hub-ready folder (model.safetensors + config.json + README.md) with huggingface_hub.

    python recipes/push_to_hub.py --folder outputs/offline_default/backbone --hub_model_id org/resnet18_repfusion_digits
    python recipes/push_to_hub.py --folder F --hub_model_id org/name --revision main --hub_private_repo true

(`--hub_model_id` and `--hub_private_repo`: the names distill.py, finetune.py and diffusers'
example scripts use.)

Prints `org/name@<commit sha>`: put it into the zoo entry's `hf_hub_id` to pin the weight.
The Hub endpoint is huggingface_hub's (`HF_ENDPOINT`); the token is huggingface_hub's (`HF_TOKEN`
or `huggingface-cli login`).
"""

import _process_env  # noqa: F401  (first: OpenMP's wait, set before torch loads)

import sys

from repfusion_zoo.errors import run_program
from repfusion_zoo.pipelines.push import main

if __name__ == "__main__":
    sys.exit(run_program("push_to_hub.py", main, doc=__doc__))
