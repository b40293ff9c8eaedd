"""The zoo: every name builds through timm, its cfg, the errors, local weights, timm names intact."""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import repfusion_zoo
from repfusion_zoo import create_model, list_models
from repfusion_zoo.errors import (
    NoNetworkError,
    PretrainedUnavailableError,
    UnknownModelError,
    UnsafeWeightsError,
    WeightsMismatchError,
)
from repfusion_zoo.zoo import ZOO, model_table, zoo_info

ZOO_NAMES = [
    "hrnet_w18_repfusion_celebahq",
    "mobilenetv2_repfusion_cifar10",
    "mobilenetv2_repfusion_tinyimagenet",
    "resnet18_repfusion_celebahq",
    "resnet18_repfusion_cifar10",
    "resnet18_repfusion_tinyimagenet",
    "resnet50_repfusion_celebahq",
    "wrn28_2_repfusion_cifar10",
]
# 256 px ResNet-50 / HRNet are slow on CPU: checked at 64 px (resnet18_repfusion_celebahq runs at 256)
TEST_SIZE = {"resnet50_repfusion_celebahq": 64, "hrnet_w18_repfusion_celebahq": 64}


pytestmark = pytest.mark.usefixtures("one_thread")  # 2 shared cores: more threads only oversubscribe


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """A closed 127.0.0.1 port as the Hub endpoint, and any socket connect recorded and refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(f"test forbids network: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_list_models_matches_timm_registry() -> None:
    assert list_models() == ZOO_NAMES
    assert timm.list_models("*repfusion*") == ZOO_NAMES
    assert list_models("*cifar10") == [n for n in ZOO_NAMES if n.endswith("cifar10")]


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_every_zoo_name_builds_runs_and_announces_its_features(name: str) -> None:
    info = zoo_info(name)
    model = timm.create_model(name)
    assert model.pretrained_cfg["architecture"] == info["repfusion"]["architecture"]
    assert model.pretrained_cfg["input_size"] == info["input_size"]
    size = TEST_SIZE.get(name, info["input_size"][-1])
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, model.num_features)  # backbone weights: no classifier by default
    out.square().mean().backward()
    first_conv = model.get_submodule(info["first_conv"])
    assert first_conv.weight.grad is not None

    features = create_model(name, features_only=True)
    maps = features(x[:1])
    assert [m.shape[1] for m in maps] == features.feature_info.channels()
    assert [size // m.shape[-1] for m in maps] == features.feature_info.reduction()


def test_num_classes_gives_a_classifier() -> None:
    model = create_model("resnet18_repfusion_cifar10", num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_zoo_info_carries_the_contract_fields() -> None:
    for name in ZOO_NAMES:
        info = zoo_info(name)
        assert info["hf_hub_id"] is None  # nothing published yet
        assert info["file"] == "model.safetensors" and info["hf_hub_filename"] == "model.safetensors"
        assert info["num_classes"] == 0 and len(info["mean"]) == len(info["std"]) == 3
        assert info["paper_ids"] == "arXiv:2308.10916"
        rf = info["repfusion"]
        assert timm.is_model(rf["architecture"]) and "repfusion" not in rf["architecture"]
        assert rf["recipe"].startswith("accelerate launch recipes/distill.py --config recipes/configs/")
        assert rf["recipe"].split()[rf["recipe"].split().index("--config") + 1].endswith(".yaml") and rf["published"] is False
        assert " data/" in rf["recipe"]  # the data flag: the command runs as given once the data is there
        assert rf["teacher"] and rf["dataset"] and rf["license"] == info["license"]
    assert zoo_info("resnet18_repfusion_celebahq")["license"] == "other"
    assert "non-commercial" in zoo_info("resnet18_repfusion_celebahq")["repfusion"]["license_note"]
    assert "--config recipes/configs/cifar10_resnet18_hint.yaml --dataset data/cifar10" in zoo_info("resnet18_repfusion_cifar10")["repfusion"]["recipe"]
    assert zoo_info("hrnet_w18_repfusion_celebahq")["input_size"] == (3, 256, 256)


def test_unknown_name_suggests_the_closest_zoo_names() -> None:
    with pytest.raises(UnknownModelError, match="resnet18_repfusion_cifar10"):
        create_model("resnet18_repfusion_cifar")
    with pytest.raises(UnknownModelError, match="wrn28_2_repfusion_cifar10"):
        create_model("wrn28_2_repfuson_cifar10")
    with pytest.raises(UnknownModelError, match="No folder"):
        create_model("/no/such/folder")


def test_unpublished_pretrained_fails_at_once_without_network(no_network: list[object]) -> None:
    with pytest.raises(PretrainedUnavailableError) as caught:
        create_model("resnet18_repfusion_celebahq", pretrained=True)
    message = str(caught.value)
    assert "No weight is published yet for 'resnet18_repfusion_celebahq'" in message
    assert "accelerate launch recipes/distill.py --config recipes/configs/celebahq_resnet18.yaml" in message
    assert "pretrained_cfg_overlay=dict(file=" in message
    with pytest.raises(PretrainedUnavailableError, match="cifar10_wrn28_2_hint.yaml"):
        timm.create_model("wrn28_2_repfusion_cifar10", pretrained=True)  # plain timm: same error
    assert no_network == []


def test_published_weight_without_network_names_model_and_repo(no_network: list[object]) -> None:
    """A zoo entry with an hf_hub_id (as once published) and an uncached weight: NoNetworkError at once."""
    hub_id = "repfusion-zoo/resnet18_repfusion_cifar10@0123abcd"
    with pytest.raises(NoNetworkError, match=f"'resnet18_repfusion_cifar10'.*{hub_id}"):
        create_model("resnet18_repfusion_cifar10", pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=hub_id))
    with pytest.raises(NoNetworkError, match="someone/backbone"):
        create_model("hf-hub:someone/backbone")


def test_pretrained_from_a_local_safetensors_file(tmp_path: Path, no_network: list[object]) -> None:
    trained = create_model("wrn28_2_repfusion_cifar10")
    path = tmp_path / "model.safetensors"
    save_file(trained.state_dict(), str(path))
    overlay = dict(file=str(path))
    loaded = create_model("wrn28_2_repfusion_cifar10", pretrained=True, pretrained_cfg_overlay=overlay)
    for key, value in trained.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    with_head = create_model("wrn28_2_repfusion_cifar10", pretrained=True, pretrained_cfg_overlay=overlay,
                             num_classes=10)
    assert torch.equal(with_head.stem.weight, trained.stem.weight)
    assert with_head.get_classifier().out_features == 10

    partial = {k: v for k, v in trained.state_dict().items() if not k.startswith("stages.2")}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(WeightsMismatchError, match="Missing key"):
        create_model("wrn28_2_repfusion_cifar10", pretrained=True,
                     pretrained_cfg_overlay=dict(file=str(tmp_path / "partial.safetensors")))
    with pytest.raises(WeightsMismatchError, match="Missing key"):  # a new head must not relax the check
        create_model("wrn28_2_repfusion_cifar10", pretrained=True, num_classes=10,
                     pretrained_cfg_overlay=dict(file=str(tmp_path / "partial.safetensors")))
    assert no_network == []


def test_pickle_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(b"not even read")
    with pytest.raises(UnsafeWeightsError, match="not safetensors"):
        create_model("resnet18_repfusion_cifar10", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_local_folder_from_timm_and_round_trip(tmp_path: Path, no_network: list[object]) -> None:
    from timm.models._hub import save_for_hf

    trained = create_model("resnet18_repfusion_cifar10")
    save_for_hf(trained, str(tmp_path / "timm"), safe_serialization=True)
    config = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert config["architecture"] == "resnet18_cifar"  # the plain architecture, not the zoo name
    assert tuple(create_model(str(tmp_path / "timm")).pretrained_cfg["mean"]) == trained.pretrained_cfg["mean"]
    loaded = create_model(tmp_path / "timm", pretrained=True)  # a Path works too
    assert torch.equal(loaded.conv1.weight, trained.conv1.weight)

    folder = repfusion_zoo.save_pretrained(
        trained, tmp_path / "ours", architecture="resnet18_cifar", model_name="resnet18_repfusion_cifar10"
    )
    again = repfusion_zoo.load_pretrained(folder)
    for key, value in trained.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert no_network == []


def test_timm_names_are_never_replaced() -> None:
    """No name we register is defined by any timm module, and timm's entries stay timm's."""
    entrypoints = timm.models._registry._model_entrypoints
    ours = sorted(n for n, fn in entrypoints.items() if fn.__module__.startswith("repfusion_zoo"))
    plain = ["mobilenetv2_cifar", "resnet18_cifar", "resnet18_cifar_025", "resnet50_cifar", "wrn28_10", "wrn28_2"]
    assert ours == sorted(ZOO_NAMES + plain)
    timm_modules = [m for n, m in list(sys.modules.items()) if n.startswith("timm.models.") and m is not None]
    assert len(timm_modules) > 50
    clashes = [(name, m.__name__) for name in ours for m in timm_modules if name in vars(m)]
    assert clashes == []  # register_model never deletes timm's function: a replaced name would show here
    for name in ("resnet18", "resnet50", "hrnet_w18", "mobilenetv2_100", "wide_resnet50_2"):
        assert entrypoints[name].__module__.startswith("timm.models."), name
    assert timm.models.get_pretrained_cfg("resnet18").architecture == "resnet18"


def test_model_card_table_is_current(repo_root: Path) -> None:
    card = (repo_root / "MODEL_CARD.md").read_text()
    table = model_table()
    assert table in card, "regenerate the table with `repfusion-zoo models`"
    assert table.count("not trained yet") == len(ZOO)


def test_model_card_table_ends_before_the_next_paragraph(repo_root: Path) -> None:
    """Markdown continues a table into the next line unless a blank line ends it."""
    card = (repo_root / "MODEL_CARD.md").read_text()
    after = card.split(model_table(), 1)[1]
    assert after.startswith("\n"), f"the line after the zoo table renders as a table row: {after.splitlines()[0]!r}"
