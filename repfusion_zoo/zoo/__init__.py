"""The zoo: one timm-registered name per backbone of the paper, and the one loader `create_model`.

Each zoo name (``<architecture>_repfusion_<dataset>``) is a timm entrypoint that builds a plain
architecture (timm's ``resnet18`` / ``resnet50`` / ``hrnet_w18``, or ours from
``repfusion_zoo.models``) with the zoo entry's pretrained cfg. Where the facts live:

* timm's ``PretrainedCfg`` (``timm.models.get_pretrained_cfg(name)``, ``model.pretrained_cfg``):
  ``hf_hub_id`` (``repfusion-zoo/<name>@<commit>`` once published, None until then),
  ``hf_hub_filename`` (``model.safetensors``: the weight file in the Hub repo; timm's own ``file``
  field means a LOCAL path, so it stays empty), ``input_size``, ``mean``, ``std``, ``num_classes``
  (0: the weights are a backbone without classifier; pass ``num_classes=N`` for a new head),
  ``license``, ``paper_ids``, ``origin_url``, ``description``.
* The facts timm's dataclass has no field for (teacher, dataset, recipe, ...) are in `ZOO` and
  `zoo_info(name)` returns everything as one dict (the ``repfusion`` key).
* Publishing a weight = one line in `registry.PUBLISHED` (name -> ``repfusion-zoo/<name>@<commit>``),
  then regenerate the MODEL_CARD.md table.

A built model's ``pretrained_cfg["architecture"]`` is the PLAIN architecture (as for timm's
``resnet18.a1_in1k``), so a ``config.json`` written from it loads in plain timm wherever the
architecture is timm's. The registry's cfg (``timm.models.get_pretrained_cfg(name)``) keeps the
zoo name.

Mean / std: CelebA-HQ entries use 0.5 / 0.5, i.e. the student sees ``x * 2 - 1`` exactly as the
DDPM teacher does (one tensor feeds both); CIFAR-10 and Tiny-ImageNet entries use their dataset
statistics.

Modules: entry.py (`ZooEntry`), registry.py (the entries, their cfgs and timm entrypoints,
`list_models`, `zoo_info`), pretrained.py (an entry built with its weight), create.py
(`create_model`, `load_pretrained`, `save_pretrained`), table.py (``repfusion-zoo models``),
prefetch.py (``repfusion-zoo prefetch``).
"""
from __future__ import annotations

from .create import create_model, load_pretrained, save_pretrained
from .entry import ZooEntry, recipes_command, recipes_source
from .registry import ZOO, list_models, zoo_info
from .table import model_table

__all__ = ["ZOO", "ZooEntry", "create_model", "list_models", "load_pretrained", "save_pretrained", "zoo_info",
           "model_table", "recipes_command", "recipes_source"]
