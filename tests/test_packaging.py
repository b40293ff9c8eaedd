"""pyproject.toml: ranges (not pins) that a user's environment can satisfy, every import declared,
no package-data glob that matches nothing."""
from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirements(optional: bool = False) -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    lines = list(project["dependencies"])
    if optional:
        lines += [r for group in project.get("optional-dependencies", {}).values() for r in group]
    reqs = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) != "repfusion-zoo"}


def _imported_top_level(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_torch_and_torchvision_are_ranges_the_installed_versions_satisfy() -> None:
    reqs = _requirements()
    for name, older in (("torch", "2.1.0"), ("torchvision", "0.16.0")):
        spec = reqs[name].specifier
        assert not any(s.operator == "==" for s in spec), f"{name} is pinned ({spec}): a user with another {name} cannot install"
        assert spec.contains(older) and spec.contains(version(name)), f"{name} {spec}"
    for name, req in _requirements(optional=True).items():
        if name in ("guided-diffusion-sdk",):
            continue
        assert req.specifier.contains(version(name), prereleases=True), f"installed {name} {version(name)} outside {req}"


def test_every_third_party_import_is_declared() -> None:
    """The package's imports need `dependencies`; the recipes' may use the optional groups too."""
    distributions = packages_distributions()
    own = {"repfusion_zoo", "recipes", "hubconf", "train_teacher", "finetune", "distill", "push_to_hub", "_process_env"}

    def undeclared(folder: Path, reqs: dict[str, Requirement]) -> list[str]:
        modules = _imported_top_level(folder) - set(sys.stdlib_module_names) - own - {"__future__"}
        missing = []
        for module in sorted(modules):
            dists = {canonicalize_name(d) for d in distributions.get(module, [module])}
            if not dists & set(reqs):
                missing.append(module)
        return missing

    assert "tqdm" in _requirements()
    optional_in_package = {"sklearn", "matplotlib", "datasets", "tensorboard", "transformers"}  # lazily: recipes, latent extras
    assert set(undeclared(REPO / "repfusion_zoo", _requirements())) <= optional_in_package
    assert undeclared(REPO / "repfusion_zoo", _requirements(optional=True)) == []
    assert undeclared(REPO / "recipes", _requirements(optional=True)) == []


def test_package_data_globs_match_files() -> None:
    package_data = PYPROJECT.get("tool", {}).get("setuptools", {}).get("package-data", {})
    for package, globs in package_data.items():
        root = REPO / package.replace(".", "/")
        for pattern in globs:
            assert list(root.glob(pattern)), f"package-data {package}: {pattern!r} matches nothing"


def test_a_pip_only_user_can_follow_the_unpublished_weight_message(tmp_path) -> None:
    """`pretrained=True` without a weight names the recipes extra, the command that fetches recipes/ through
    pip once a release is on the index (and that none is yet), then the recipe with its data flag: the
    sdist built from this tree holds that file and config."""
    import shutil
    import subprocess
    import tarfile

    import repfusion_zoo
    from repfusion_zoo.errors import PretrainedUnavailableError
    from repfusion_zoo.zoo import ZOO, recipes_command

    try:
        repfusion_zoo.create_model("resnet18_repfusion_cifar10", pretrained=True)
    except PretrainedUnavailableError as error:
        message = str(error)
    command = recipes_command()
    assert command in message and f"pip download repfusion-zoo=={repfusion_zoo.__version__}" in command
    assert 'pip install "repfusion-zoo[recipes]"' in message and "No release has been published yet" in message
    assert ZOO["resnet18_repfusion_cifar10"].recipe in message and "--dataset data/cifar10" in message
    tree = tmp_path / "tree"
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(".git", ".venv", "outputs", "__pycache__", "*.egg-info"))
    built = subprocess.run([sys.executable, "-c", "import setuptools.build_meta as b; print(b.build_sdist('dist'))"],
                           cwd=tree, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    sdist = built.stdout.strip().splitlines()[-1]
    assert f"tar xzf {sdist} && cd {sdist.removesuffix('.tar.gz')}" in command
    with tarfile.open(tree / "dist" / sdist) as archive:
        names = set(archive.getnames())
    root = sdist.removesuffix(".tar.gz")
    assert not [n for n in names if n.startswith(f"{root}/teachers/")], "the committed teachers stay out of the sdist"
    for entry in ZOO.values():
        words = entry.recipe.split()
        recipe_file, config = words[2], words[words.index("--config") + 1]
        assert f"{root}/{recipe_file}" in names and f"{root}/{config}" in names, entry.name
