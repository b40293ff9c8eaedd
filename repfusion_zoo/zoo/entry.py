"""One zoo entry: what a backbone of the paper is, where it comes from, how to make it."""
from __future__ import annotations

from dataclasses import dataclass

from ..version import __version__

__all__ = ["ZooEntry", "recipes_command", "PAPER_ID", "PAPER_NAME", "ORIGIN_URL", "HUB_ORG", "RECIPE", "GET_RECIPES"]

PAPER_ID = "arXiv:2308.10916"
PAPER_NAME = "Diffusion Model as Representation Learner (Yang & Wang, ICCV 2023)"
ORIGIN_URL = "https://github.com/Adamdad/Repfusion"
HUB_ORG = "repfusion-zoo"
RECIPE = "accelerate launch recipes/distill.py --config recipes/configs/{config}"
#: where a pip-only user gets recipes/: the wheel holds the library only, the source distribution
#: on the same index also holds recipes/ (MANIFEST.in); one command fetches and unpacks it
GET_RECIPES = ("pip download repfusion-zoo=={version} --no-deps --no-binary repfusion-zoo && "
               "tar xzf repfusion_zoo-{version}.tar.gz && cd repfusion_zoo-{version}")


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
    hf_hub_id: str | None = None  # "repfusion-zoo/<name>@<commit>" once published

    @property
    def recipe(self) -> str:
        return RECIPE.format(config=self.config)

    @property
    def hub_repo(self) -> str:
        return f"{HUB_ORG}/{self.name}"


def recipes_command() -> str:
    """The shell command that fetches and unpacks this version's recipes/ (for a pip-only install)."""
    return GET_RECIPES.format(version=__version__)
