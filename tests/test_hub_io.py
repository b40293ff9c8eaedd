"""Weights I/O: the folder format, strict loads, pickle refusal, push to / load from a local Hub-API server."""
from __future__ import annotations

import json
import os
import stat
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub import ModelCard

import repfusion_zoo
from repfusion_zoo.errors import ConfigError, PretrainedUnavailableError, UnsafeWeightsError, WeightsMismatchError
from repfusion_zoo import atomic
from repfusion_zoo import load_pretrained, push_to_hub, save_pretrained
from repfusion_zoo.hub import load_state_dict_strict, read_config, update_card_fields, update_card_metrics

from _hub_fixtures import same_weights

SMALL_ARCH = "test_resnet"  # a tiny plain timm architecture


def _small_model(num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(1)
    return timm.create_model(SMALL_ARCH, num_classes=num_classes)


def _card(**extra) -> dict:
    return {"teacher": "google/ddpm-cifar10-32", "dataset": "cifar10", "license": "apache-2.0",
            "recipe": "accelerate launch recipes/distill.py --config recipes/configs/x.yaml", **extra}


@pytest.fixture
def saved(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    model = _small_model()
    return model, save_pretrained(model, tmp_path / "model", architecture=SMALL_ARCH, model_name="tiny_repfusion_test",
                                  metrics={"top1": 91.5}, card=_card())


# --- the folder format ----------------------------------------------------------------------------
def test_save_reads_the_architecture_from_the_model_and_never_guesses_its_origin(tmp_path):
    folder = save_pretrained(_small_model(), tmp_path / "model")  # no architecture=: the model's pretrained_cfg says it
    assert read_config(folder)["architecture"] == SMALL_ARCH
    card = (folder / "README.md").read_text()
    assert "how its weights were made is not recorded" in card and "distilled" not in card.split("## Model details")[0]
    folder = save_pretrained(_small_model(), tmp_path / "random", card={"origin": "random-init"})
    assert "randomly initialised" in (folder / "README.md").read_text()
    with pytest.raises(ConfigError, match="architecture="):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "plain")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_folders_and_files_follow_the_umask(tmp_path, umask):
    """A shared model folder is readable as the user's umask says (mkdtemp alone would make it owner-only)."""
    previous = os.umask(umask)
    try:
        folder = save_pretrained(_small_model(), tmp_path / "model", architecture=SMALL_ARCH)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_save_writes_timm_config_and_card(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]  # no temp folder left beside it
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == SMALL_ARCH and config["num_classes"] == 10
    assert config["num_features"] == model.num_features
    assert config["pretrained_cfg"]["hf_hub_filename"] == "model.safetensors"
    assert config["model_args"]["num_classes"] == 10
    info = config["repfusion"]
    assert info["name"] == "tiny_repfusion_test" and info["teacher"] == "google/ddpm-cifar10-32"
    assert info["metrics"] == {"image-classification": {"cifar10": {"top1": 91.5}}}

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "timm" and card.data.license == "apache-2.0"
    assert {"repfusion", "image-classification", "knowledge-distillation"} <= set(card.data.tags)
    assert card.data.datasets == ["cifar10"] and card.data.base_model == "google/ddpm-cifar10-32"
    (result,) = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_type) == ("accuracy", 91.5, "cifar10")
    assert "accelerate launch recipes/distill.py" in card.text


def test_zoo_model_card_takes_the_zoo_entry(tmp_path):
    name = "wrn28_2_repfusion_cifar10"
    if name not in repfusion_zoo.list_models():
        pytest.skip("zoo entry not registered")
    from repfusion_zoo.zoo import zoo_info

    info = zoo_info(name)["repfusion"]
    folder = save_pretrained(repfusion_zoo.create_model(name), tmp_path / name, architecture=info["architecture"],
                             model_name=name)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == info["architecture"]  # the plain architecture, not the zoo name
    assert config["repfusion"]["teacher"] == info["teacher"] and config["repfusion"]["recipe"] == info["recipe"]
    assert ModelCard.load(folder / "README.md").data.base_model == info["teacher"]


def test_save_is_atomic_and_replaces(tmp_path, monkeypatch):
    first = _small_model()
    folder = save_pretrained(first, tmp_path / "m", architecture=SMALL_ARCH)
    second = _small_model()
    with torch.no_grad():
        second.fc.weight.add_(1.0)

    def killed(*args, **kwargs):  # the process dies while writing the weights
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(second, folder, architecture=SMALL_ARCH)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # old folder intact, no half folder
    assert same_weights(load_pretrained(folder).state_dict(), first.state_dict())

    save_pretrained(second, folder, architecture=SMALL_ARCH)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert same_weights(load_pretrained(folder).state_dict(), second.state_dict())


# --- a killed save heals: the leftover states a SIGKILL can leave, recovered by the next save or by
# the explicit `repfusion-zoo recover`; a load never changes the disk ---
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leave_aside(source: Path, target: Path, kind: str, pid: int, host: str = atomic.HOST) -> Path:
    """Move ``source`` to the ``.<name>.<kind>-<host>-<pid>-*`` name a writer with that pid uses."""
    path = atomic.leftover_path(target, kind, pid)
    path = path.with_name(path.name.replace(f"-{atomic.HOST}-", f"-{host}-"))
    os.replace(source, path)
    return path


def _killed_between_renames(tmp_path: Path, pid: int) -> tuple[Path, torch.nn.Module, Path, Path]:
    """No target; the complete previous folder under ``.m.old-*``, the complete new one under ``.m.tmp-*``."""
    first = _small_model()
    folder = save_pretrained(first, tmp_path / "m", architecture=SMALL_ARCH, card=_card())
    second = _small_model()
    with torch.no_grad():
        second.fc.weight.add_(1.0)
    scratch = save_pretrained(second, tmp_path / "scratch", architecture=SMALL_ARCH)
    old = _leave_aside(folder, folder, "old", pid)
    tmp = _leave_aside(scratch, folder, "tmp", pid)
    return folder, first, old, tmp


def _listing(root: Path) -> dict[str, bytes]:
    """Every path under ``root`` (names, folders and file bytes): what a load must leave identical."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(root.rglob("*"))}


def _recover_command(folder: Path) -> None:
    from repfusion_zoo.cli import main

    assert main(["recover", str(folder)]) == 0


@pytest.mark.parametrize("heal", ["recover", "repfusion-zoo recover", "update_card_metrics", "save_pretrained"])
def test_kill_between_the_renames_of_a_replace_heals(tmp_path, heal):
    folder, first, _, _ = _killed_between_renames(tmp_path, _dead_pid())
    assert not folder.exists()
    before = _listing(tmp_path)
    with pytest.raises(FileNotFoundError, match="repfusion-zoo recover"):  # a load says how, and touches nothing
        load_pretrained(folder)
    with pytest.raises(repfusion_zoo.errors.UnknownModelError, match="repfusion-zoo recover"):
        repfusion_zoo.create_model(str(folder), pretrained=True)
    assert _listing(tmp_path) == before
    if heal in ("recover", "repfusion-zoo recover"):
        atomic.recover(folder) if heal == "recover" else _recover_command(folder)
        assert same_weights(load_pretrained(folder).state_dict(), first.state_dict())  # the old folder is back
        model = repfusion_zoo.create_model(str(folder), pretrained=True)
        assert same_weights(model.state_dict(), first.state_dict())
    elif heal == "update_card_metrics":
        update_card_metrics(folder, {"top1": 50.0}, task="classification", dataset="cifar10")
        assert read_config(folder)["repfusion"]["metrics"]["image-classification"] == {"cifar10": {"top1": 50.0}}
        assert same_weights(load_pretrained(folder).state_dict(), first.state_dict())
    else:
        save_pretrained(_small_model(), folder, architecture=SMALL_ARCH)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # both leftovers gone


def test_a_real_sigkill_between_the_renames_heals(saved, tmp_path):
    """A child process replaces the folder and is SIGKILLed right after the first rename."""
    model, folder = saved
    code = textwrap.dedent(f"""
        import os, signal, timm
        from repfusion_zoo import save_pretrained
        real_replace = os.replace

        def replace(src, dst):
            real_replace(src, dst)
            if ".old-" in os.path.basename(dst):
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace
        save_pretrained(timm.create_model({SMALL_ARCH!r}, num_classes=10), {str(folder)!r}, architecture={SMALL_ARCH!r})
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr[-3000:]
    assert not folder.exists() and len(list(tmp_path.glob(".model.old-*"))) == len(list(tmp_path.glob(".model.tmp-*"))) == 1
    _recover_command(folder)
    assert same_weights(load_pretrained(folder).state_dict(), model.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_kill_while_writing_leaves_a_temp_folder_recovery_removes(saved, tmp_path):
    model, folder = saved
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x00" * 10)  # killed mid-write
    _leave_aside(half, folder, "tmp", _dead_pid())
    spare = tmp_path / "spare"
    spare.mkdir()  # killed after the second rename, before the old folder was removed
    _leave_aside(spare, folder, "old", _dead_pid())
    assert len(list(tmp_path.iterdir())) == 3
    assert same_weights(load_pretrained(folder).state_dict(), model.state_dict())
    assert len(list(tmp_path.iterdir())) == 3  # the load left them
    atomic.recover(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_leftovers_of_live_or_remote_writers_are_left_alone(tmp_path):
    folder, _, old, tmp = _killed_between_renames(tmp_path, os.getpid())  # a concurrent writer, mid-swap
    remote = tmp_path / "remote"
    remote.mkdir()
    remote = _leave_aside(remote, folder, "tmp", _dead_pid(), host="other_host")  # written from another machine
    older = save_pretrained(_small_model(), tmp_path / "older", architecture=SMALL_ARCH)
    older = _leave_aside(older, folder, "old", _dead_pid())  # a killed writer's, older than the live one's
    with pytest.raises(FileNotFoundError, match=f"(?i)does not exist.*process {os.getpid()} .*writing it now"):
        load_pretrained(folder)
    atomic.recover(folder)
    assert old.is_dir() and tmp.is_dir() and remote.is_dir() and not folder.exists()  # the live writer finishes
    assert not older.exists()


@pytest.fixture
def write_watch():
    """Every rename, removal, mkdir or open-for-writing this process makes under a watched folder,
    seen through Python's audit events (nothing is patched: the real code path runs)."""
    watched: list[Path] = []
    seen: list[tuple[str, str]] = []
    events = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.chmod", "os.truncate"}

    def hook(event: str, args: tuple) -> None:
        if not watched:
            return
        writes = event in events or (event == "open" and len(args) > 2 and (
            (isinstance(args[1], str) and any(m in args[1] for m in "wax+"))
            or (isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))))
        if writes and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if any(path.startswith(str(w)) for w in watched):
                seen.append((event, path))

    sys.addaudithook(hook)
    yield watched, seen
    watched.clear()


def test_loading_a_read_only_folder_leaves_it_byte_identical(saved, tmp_path, write_watch):
    """A read-only folder, even beside a dead writer's leftovers, loads through every entry point
    without one write under its parent, and stays byte-identical."""
    model, folder = saved
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x00" * 10)
    _leave_aside(half, folder, "tmp", _dead_pid())  # what recover() would delete
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)  # read-only for everyone (root still could write)
    before = _listing(tmp_path)
    watched, seen = write_watch
    watched.append(tmp_path)
    try:
        loaded = [load_pretrained(folder), load_pretrained(folder / "model.safetensors"),
                  repfusion_zoo.create_model(str(folder), pretrained=True), repfusion_zoo.create_model(folder),
                  timm.create_model(f"local-dir:{folder}", pretrained=True)]
    finally:
        watched.clear()
        for path in [tmp_path, *tmp_path.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert seen == []
    assert _listing(tmp_path) == before
    for other in loaded[:3]:
        assert same_weights(other.state_dict(), model.state_dict())


def test_a_folder_another_process_is_writing_loads_or_fails_cleanly(saved, tmp_path):
    """A live writer (a real child process inside `atomic_folder`): the current folder loads, a folder
    it is creating fails at once naming the writer, and nothing beside either is touched."""
    model, folder = saved
    code = textwrap.dedent(f"""
        import sys, time
        from repfusion_zoo.atomic import atomic_folder
        for target in ({str(folder)!r}, {str(tmp_path / "new")!r}):
            context = atomic_folder(target)
            tmp = context.__enter__()
            (tmp / "config.json").write_text("{{}}")
        print("writing", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        before = _listing(tmp_path)
        assert len([p for p in before if p.startswith(".")]) == 2  # the two temp folders of the live writer
        assert same_weights(load_pretrained(folder).state_dict(), model.state_dict())
        with pytest.raises(FileNotFoundError, match=f"{child.pid}.*writing it now"):
            load_pretrained(tmp_path / "new")
        with pytest.raises(repfusion_zoo.errors.UnknownModelError, match=f"{child.pid}.*writing it now"):
            repfusion_zoo.create_model(str(tmp_path / "new"), pretrained=True)
        assert _listing(tmp_path) == before
    finally:
        child.kill()
        child.wait()


def test_an_error_between_the_two_renames_puts_the_old_folder_back(tmp_path, monkeypatch):
    first = _small_model()
    folder = save_pretrained(first, tmp_path / "m", architecture=SMALL_ARCH)
    real_replace = os.replace

    def interrupted(src, dst):
        if Path(dst) == folder and ".tmp-" in Path(src).name:  # the rename of the new folder into place
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(_small_model(num_classes=3), folder, architecture=SMALL_ARCH)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert same_weights(load_pretrained(folder).state_dict(), first.state_dict())


def test_update_card_metrics(saved):
    _, folder = saved
    update_card_metrics(folder, {"mIoU": 0.61}, task="segmentation", dataset="celebamask-hq")
    config = json.loads((folder / "config.json").read_text())
    assert config["repfusion"]["metrics"]["image-segmentation"] == {"celebamask-hq": {"mIoU": 0.61}}
    assert config["repfusion"]["metrics"]["image-classification"] == {"cifar10": {"top1": 91.5}}
    card = ModelCard.load(folder / "README.md")
    assert {(r.task_type, r.metric_name, r.metric_value) for r in card.data.eval_results} == {
        ("image-classification", "top1", 91.5), ("image-segmentation", "mIoU", 0.61)}
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def _front_matter(folder: Path) -> dict:
    import yaml

    return yaml.safe_load((folder / "README.md").read_text().split("---")[1])


def test_a_card_built_from_a_local_path_dataset_holds_no_path(tmp_path):
    """`--dataset /data/cifar10` (and the paths in the recipe command and teacher) stay off the card and
    config.json; a Hub dataset (`hf:uoft-cs/cifar10`) becomes the card's `datasets` and model-index type."""
    local = "/data/cifar10"
    card = _card(dataset=f"imagefolder:{local}", teacher=f"{tmp_path}/teacher",
                 recipe=f"accelerate launch recipes/distill.py --dataset {local} --output_dir {tmp_path}/out")
    folder = save_pretrained(_small_model(), tmp_path / "local", architecture=SMALL_ARCH, metrics={"top1": 80.0}, card=card)
    update_card_metrics(folder, {"top1": 81.0}, task="classification", dataset=local)
    for name in ("README.md", "config.json"):
        text = (folder / name).read_text()
        assert "/data" not in text and str(tmp_path) not in text, name
    front = _front_matter(folder)
    assert "datasets" not in front and "model-index" not in front  # no Hub id: omitted
    assert "cifar10 (a local folder)" in (folder / "README.md").read_text()  # still named in the body

    hub = save_pretrained(_small_model(), tmp_path / "hub", architecture=SMALL_ARCH, metrics={"top1": 80.0},
                          card=_card(dataset="hf:uoft-cs/cifar10:plain_text"))
    update_card_fields(hub, {"seed": 1})  # a later update keeps the published Hub id (no 'local folder')
    front = _front_matter(hub)
    assert front["datasets"] == ["uoft-cs/cifar10"]
    assert front["model-index"][0]["results"][0]["dataset"]["type"] == "uoft-cs/cifar10"
    assert json.loads((hub / "config.json").read_text())["repfusion"]["dataset"] == "uoft-cs/cifar10"


def test_backbone_card_is_image_feature_extraction(tmp_path):
    """timm's convention: num_classes=0 weights are `image-feature-extraction`, a classifier `image-classification`."""
    backbone = save_pretrained(_small_model(num_classes=0), tmp_path / "b", architecture=SMALL_ARCH)
    assert _front_matter(backbone)["pipeline_tag"] == "image-feature-extraction"
    assert "image-classification" not in _front_matter(backbone)["tags"]
    classifier = save_pretrained(_small_model(), tmp_path / "c", architecture=SMALL_ARCH)
    assert _front_matter(classifier)["pipeline_tag"] == "image-classification"


def _run_python_blocks(readme: str, folder: Path) -> None:
    """Run the card's python snippet against ``folder`` (its ``hf-hub:`` id resolved locally)."""
    code = readme.split("```python")[1].split("```")[0]
    repo = code.split("hf-hub:")[1].split("'")[0]
    code = code.replace(f"hf-hub:{repo}", f"local-dir:{folder}")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True, text=True)


@pytest.mark.parametrize("architecture", ["wrn28_2", SMALL_ARCH])
def test_card_snippet_works_for_the_architectures_timm_lacks(tmp_path, architecture):
    """For an architecture this package adds, the card's snippet imports repfusion_zoo before timm; a
    plain python process then loads the folder with it (and fails without that import)."""
    model = timm.create_model(architecture, num_classes=0)
    folder = save_pretrained(model, tmp_path / architecture, architecture=architecture)
    readme = (folder / "README.md").read_text()
    native = architecture == SMALL_ARCH
    assert ("import repfusion_zoo" in readme.split("```python")[1]) is not native
    _run_python_blocks(readme, folder)
    if not native:
        without = readme.replace("import repfusion_zoo", "pass  #")
        with pytest.raises(subprocess.CalledProcessError):
            _run_python_blocks(without, folder)


def test_update_card_metrics_removes_the_temp_file_a_killed_update_left(saved):
    model, folder = saved
    stale = atomic.leftover_path(folder / "config.json", "tmp", _dead_pid())
    stale.write_text('{"half": ')  # killed while writing the new config.json
    update_card_metrics(folder, {"top1": 93.0}, task="classification", dataset="cifar10")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert read_config(folder)["repfusion"]["metrics"]["image-classification"] == {"cifar10": {"top1": 93.0}}
    assert same_weights(load_pretrained(folder).state_dict(), model.state_dict())


def test_tied_weights_are_saved(tmp_path):
    model = _small_model()
    model.extra = torch.nn.Linear(model.fc.in_features, 10)
    model.extra.weight = model.fc.weight  # shared storage: safetensors refuses it unless handled
    folder = save_pretrained(model, tmp_path / "tied", architecture=SMALL_ARCH)
    weights = safetensors.torch.load_file(folder / "model.safetensors")
    assert torch.equal(weights["extra.weight"], weights["fc.weight"])


# --- loading -----------------------------------------------------------------------------------
def test_load_folder_and_single_file(saved, tmp_path):
    model, folder = saved
    assert same_weights(load_pretrained(folder).state_dict(), model.state_dict())
    assert same_weights(load_pretrained(folder / "model.safetensors").state_dict(), model.state_dict())
    features = load_pretrained(folder, features_only=True).eval()
    assert len(features(torch.randn(1, 3, 64, 64))) == len(features.feature_info)

    bare = tmp_path / "bare.safetensors"  # no metadata, no config.json beside it
    safetensors.torch.save_file(model.state_dict(), bare)
    with pytest.raises(ConfigError, match="architecture="):
        load_pretrained(bare)
    loaded = load_pretrained(bare, architecture=SMALL_ARCH, num_classes=10)
    assert same_weights(loaded.state_dict(), model.state_dict())


def test_unpublished_zoo_name_says_how_to_make_it():
    name = "wrn28_2_repfusion_cifar10"
    if name not in repfusion_zoo.list_models():
        pytest.skip("zoo entry not registered")
    with pytest.raises(PretrainedUnavailableError, match="recipe|accelerate launch"):
        load_pretrained(name)


def test_missing_unexpected_and_shape_mismatch_are_listed(saved, tmp_path):
    model, _ = saved
    state = dict(model.state_dict())
    state.pop("fc.bias")
    state["stray.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(3, model.num_features)
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(state, bad)
    with pytest.raises(WeightsMismatchError) as info:
        load_pretrained(bad, architecture=SMALL_ARCH, num_classes=10)
    message = str(info.value)
    assert "fc.bias" in message and "stray.weight" in message and "fc.weight" in message
    assert "bad.safetensors" in message and "missing" in message and "unexpected" in message

    fresh = _small_model()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(WeightsMismatchError, match="fc.bias"):
        load_state_dict_strict(fresh, state, "a test state dict")
    assert same_weights(fresh.state_dict(), before)  # nothing partially loaded


class _Trap:
    """Unpickling this creates a marker file: proof that no loader unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["weights.pth", "pytorch_model.bin", "weights.pt", "disguised.safetensors"])
def test_pickle_is_refused_unopened(tmp_path, name):
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"fc.weight": _Trap(marker)}))
    with pytest.raises(UnsafeWeightsError, match="safetensors"):
        load_pretrained(path, architecture=SMALL_ARCH)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(path.read_bytes())
    (folder / "config.json").write_text(json.dumps({"architecture": SMALL_ARCH, "num_classes": 10}))
    with pytest.raises(UnsafeWeightsError):
        load_pretrained(folder)
    assert not marker.exists()


# --- the Hub, through the real huggingface_hub client and a local Hub-API server -------------------
def test_push_then_create_model_is_bit_identical(published_zoo_model, hub_server, hub_state):
    reference = safetensors.torch.load_file(published_zoo_model.weights)
    before = len(hub_state.requests)
    model = repfusion_zoo.create_model(
        published_zoo_model.name, pretrained=True,
        pretrained_cfg_overlay=dict(hf_hub_id=published_zoo_model.hf_hub_id),
    )
    assert same_weights(model.state_dict(), reference)
    resolved = [p for m, p in hub_state.requests[before:] if "/resolve/" in p]
    assert any(p.endswith(f"{published_zoo_model.sha}/model.safetensors") for p in resolved)

    loaded = load_pretrained(f"hf-hub:{published_zoo_model.hf_hub_id}")
    assert same_weights(loaded.state_dict(), reference)


def test_push_returns_pinned_commits(saved, hub_server, hub_state, capsys):
    _, folder = saved
    first = push_to_hub(folder, "repfusion-test/pinning")
    update_card_metrics(folder, {"top1": 92.0}, task="classification", dataset="cifar10")
    second = push_to_hub(folder, "repfusion-test/pinning", commit_message="new metrics")
    assert first != second and len(second) == 40
    assert f"repfusion-test/pinning@{second}" in capsys.readouterr().out
    repo = hub_state.repos["repfusion-test/pinning"]
    assert repo.branches["main"] == second
    assert json.loads(repo.commits[first]["config.json"])["repfusion"]["metrics"]["image-classification"] == {
        "cifar10": {"top1": 91.5}}
    branch = push_to_hub(folder, "repfusion-test/pinning", revision="v2")
    assert repo.branches["v2"] == branch


def test_push_refuses_incomplete_or_pickled_folder(saved, tmp_path, hub_server):
    _, folder = saved
    (folder / "extra.pt").write_bytes(b"not allowed")
    with pytest.raises(UnsafeWeightsError, match="extra.pt"):
        push_to_hub(folder, "repfusion-test/refused")
    with pytest.raises(ConfigError, match="save_pretrained"):
        push_to_hub(tmp_path, "repfusion-test/refused")


def test_plain_timm_loads_a_pushed_folder_without_this_package(hub_server, tmp_path):
    model = _small_model(num_classes=0)
    folder = save_pretrained(model, tmp_path / "plain", architecture=SMALL_ARCH, model_name="test_resnet_repfusion",
                             card=_card())
    sha = push_to_hub(folder, "repfusion-test/plain-timm")
    out = tmp_path / "child.safetensors"
    code = textwrap.dedent(f"""
        import sys, timm, safetensors.torch
        model = timm.create_model("hf-hub:repfusion-test/plain-timm@{sha}", pretrained=True)
        assert not any(m.startswith("repfusion_zoo") for m in sys.modules), "repfusion_zoo was imported"
        safetensors.torch.save_file(model.state_dict(), {str(out)!r})
    """)
    env = {**os.environ, "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert same_weights(safetensors.torch.load_file(out), model.state_dict())


def _prefetch_cli(argv: list[str]) -> int:
    """``repfusion-zoo prefetch ...`` as cli.py builds it (only this sub-command, so it runs alone)."""
    import argparse

    from repfusion_zoo.zoo.prefetch import add_parser

    parser = argparse.ArgumentParser(prog="repfusion-zoo")
    add_parser(parser.add_subparsers(dest="command", required=True))
    from repfusion_zoo.cli import underscored

    args = parser.parse_args(underscored(argv))
    return int(args.func(args) or 0)


def test_prefetch_command(published_zoo_model, hub_server, tmp_path, capsys):
    main = _prefetch_cli

    cache = tmp_path / "prefetched"
    assert main(["prefetch", f"hf-hub:{published_zoo_model.hf_hub_id}", "--cache_dir", str(cache)]) == 0
    repo_folder = cache / f"models--{published_zoo_model.repo_id.replace('/', '--')}"
    snapshot = repo_folder / "snapshots" / published_zoo_model.sha
    assert (snapshot / "config.json").is_file() and (snapshot / "model.safetensors").is_file()

    unpublished = published_zoo_model.name
    assert main(["prefetch", unpublished, "not_a_model_xyz", "--cache-dir", str(cache)]) == 1
    err = capsys.readouterr().err
    assert f"{unpublished}" in err and "accelerate launch" in err  # says how to produce it
    assert "not_a_model_xyz" in err


def test_new_num_classes_replaces_only_the_classifier(saved, tmp_path):
    model, folder = saved
    loaded = load_pretrained(folder, num_classes=3)
    assert loaded.num_classes == 3
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in body.items())

    state = dict(model.state_dict())
    state.pop("conv1.0.weight")  # with a new head timm loads non-strictly: this must still be caught
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(state, bad)
    with pytest.raises(WeightsMismatchError, match="conv1.0.weight"):
        load_pretrained(bad, architecture=SMALL_ARCH, num_classes=3)
