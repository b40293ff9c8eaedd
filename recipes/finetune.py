#!/usr/bin/env python
"""Fine-tune a backbone on a downstream task with one Accelerate loop for every task.

    accelerate launch recipes/finetune.py --task classification --model PATH/TO/FOLDER [--key value ...]
    accelerate launch recipes/finetune.py --config recipes/configs/finetune_digits.yaml

`--model` is a zoo or timm name, `hf-hub:org/repo[@rev]`, or a Hub-ready folder (e.g. the
`backbone/` that recipes/distill.py writes); `--pretrained false` starts from scratch.
The run trains, evaluates on the held-out split (sharded over processes, metric states summed),
writes pictures into `output_dir/pictures`, saves the fine-tuned model as a Hub-ready folder in
`output_dir/model` with the metrics in its model card (and, for a local start folder, in that
folder's card too), and with `--push_to_hub --hub_model_id org/name` publishes it.
In-process use: `from repfusion_zoo.pipelines.finetune import finetune, load_finetune_config`; `finetune(load_finetune_config([...])) -> dict`.
"""

import _process_env  # noqa: F401  (first: OpenMP's wait, set before torch loads)

import sys

from repfusion_zoo.errors import run_program
from repfusion_zoo.pipelines.finetune import main

if __name__ == "__main__":
    sys.exit(run_program("finetune.py", main, doc=__doc__))
