"""One zoo entry: what a backbone of the paper is, where it comes from, how to make it."""
from __future__ import annotations

from dataclasses import dataclass

from ..version import __version__

__all__ = ["ZooEntry", "recipes_command", "recipes_source", "RECIPES_INSTALL", "PAPER_ID", "PAPER_NAME", "ORIGIN_URL", "HUB_ORG", "RECIPE", "GET_RECIPES"]

PAPER_ID = "arXiv:2308.10916"
PAPER_NAME = "Diffusion Model as Representation Learner (Yang & Wang, ICCV 2023)"
ORIGIN_URL = "https://github.com/Adamdad/Repfusion"
HUB_ORG = "repfusion-zoo"
RECIPE = "accelerate launch recipes/distill.py --config recipes/configs/{config} {data}"
#: where a pip-only user gets recipes/: the wheel holds the library only, the source distribution
#: on the same index also holds recipes/ (MANIFEST.in); one command fetches and unpacks it
GET_RECIPES = ("pip download repfusion-zoo=={version} --no-deps --no-binary repfusion-zoo && "
               "tar xzf repfusion_zoo-{version}.tar.gz && cd repfusion_zoo-{version}")
#: the recipes need the optional packages of the `recipes` extra (datasets, scikit-learn, matplotlib, tensorboard)
RECIPES_INSTALL = 'pip install "repfusion-zoo[recipes]"'


@dataclass(frozen=True)
class ZooEntry:
    """One backbone of the paper: what it is, where it comes from, how to make it."""

    name: str
    architecture: str  # the plain timm-registered architecture it builds
    teacher: str
    dataset: str
    config: str  # recipes/configs/<config>
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    license: str
    license_note: str
    first_conv: str
    classifier: str
    paper_table: str
    data: str = ""  # the recipe's data flag, e.g. "--dataset /path/to/cifar10"
    hf_hub_id: str | None = None  # "repfusion-zoo/<name>@<commit>" once published

    @property
    def recipe(self) -> str:
        """The command that makes this weight, complete but for the data's path (and a teacher the config names)."""
        return RECIPE.format(config=self.config, data=self.data).strip()

    @property
    def hub_repo(self) -> str:
        return f"{HUB_ORG}/{self.name}"


def recipes_command() -> str:
    """The shell command that fetches and unpacks this version's recipes/ (for a pip-only install)."""
    return GET_RECIPES.format(version=__version__)


def recipes_source() -> str:
    """Where a pip-only user gets recipes/, said as it is: the command once a release is on the index,
    a source checkout until then; and the extra the recipes need."""
    return (f"The recipes are not in the installed package; they need its recipes extra ({RECIPES_INSTALL}) "
            f"and ship in the project's source distribution. Once a release is on the package index, this fetches "
            f"them:\n    {recipes_command()}\nNo release has been published yet: until then, run them from a source "
            f"checkout of the project (recipes/ at its top).")
