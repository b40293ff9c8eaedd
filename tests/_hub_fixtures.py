"""Hub fixtures: a local Hub-API server on 127.0.0.1 and a filled cache (owned by the hub part).

* ``hub_server_instance`` (session): the running `hub_server.HubServer` (in-memory repos, request log).
* ``hub_server``: its endpoint URL; for the test, huggingface_hub in this process
  (``constants.ENDPOINT``) and subprocesses (``HF_ENDPOINT``) talk to it, with a fresh empty
  Hub cache under tmp_path (huggingface_hub reads ``HF_*`` at import, so the constants are
  patched as well as the environment).
* ``published_zoo_model`` (session): a zoo backbone with random "trained-looking" weights,
  saved with `save_pretrained` and pushed with `push_to_hub` to the local server.
* ``filled_hub_cache`` (session): a Hub cache filled from that repo by the real
  ``hf_hub_download`` (pinned sha and ``main``), for offline tests.
"""
from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_server import HubServer, HubState  # noqa: E402

HUB_TEST_MODEL = "wrn28_2_repfusion_cifar10"  # small (1.5 M parameters), our own architecture
HUB_TEST_ORG = "repfusion-test"

__all__ = [
    "hub_server_instance",
    "hub_server",
    "hub_state",
    "published_zoo_model",
    "filled_hub_cache",
    "closed_port_endpoint",
    "PublishedModel",
    "FilledCache",
    "point_hub_at",
]


def same_weights(a: dict[str, "torch.Tensor"], b: dict[str, "torch.Tensor"]) -> bool:
    """Same keys and bit-identical tensors."""
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@dataclass(frozen=True)
class PublishedModel:
    """A zoo weight pushed to the local Hub."""

    name: str  # zoo name
    repo_id: str
    sha: str  # the commit to pin
    folder: Path  # the saved folder that was pushed
    weights: Path  # its model.safetensors (the reference for bit-identity)

    @property
    def hf_hub_id(self) -> str:
        return f"{self.repo_id}@{self.sha}"


@dataclass(frozen=True)
class FilledCache:
    cache_dir: Path
    published: PublishedModel


def point_hub_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, cache_dir: Path, offline: bool = False) -> None:
    """huggingface_hub (this process and subprocesses) -> ``endpoint``, Hub cache -> ``cache_dir``."""
    from huggingface_hub import constants

    cache_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture(scope="session")
def hub_server_instance():
    server = HubServer().start()
    yield server
    server.stop()


@pytest.fixture
def hub_server(hub_server_instance: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    point_hub_at(monkeypatch, hub_server_instance.endpoint, tmp_path / "hf-cache")
    return hub_server_instance.endpoint


@pytest.fixture
def hub_state(hub_server_instance: HubServer) -> HubState:
    return hub_server_instance.state


@pytest.fixture
def closed_port_endpoint() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def published_zoo_model(hub_server_instance: HubServer, tmp_path_factory: pytest.TempPathFactory) -> PublishedModel:
    import torch

    import repfusion_zoo
    from repfusion_zoo import push_to_hub, save_pretrained
    from repfusion_zoo.zoo import zoo_info

    if HUB_TEST_MODEL not in repfusion_zoo.list_models():
        pytest.skip(f"zoo entry {HUB_TEST_MODEL} is not registered")
    torch.manual_seed(0)
    model = repfusion_zoo.create_model(HUB_TEST_MODEL)
    with torch.no_grad():  # trained-looking: no default init values (BN stats included)
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.1 + 0.01)
    folder = tmp_path_factory.mktemp("published") / HUB_TEST_MODEL
    architecture = zoo_info(HUB_TEST_MODEL)["repfusion"]["architecture"]
    save_pretrained(model, folder, architecture=architecture, model_name=HUB_TEST_MODEL, metrics={"top1": 12.5})
    repo_id = f"{HUB_TEST_ORG}/{HUB_TEST_MODEL}"
    sha = push_to_hub(folder, repo_id, endpoint=hub_server_instance.endpoint, token=False)
    return PublishedModel(HUB_TEST_MODEL, repo_id, sha, folder, folder / "model.safetensors")


@pytest.fixture(scope="session")
def filled_hub_cache(
    published_zoo_model: PublishedModel, hub_server_instance: HubServer, tmp_path_factory: pytest.TempPathFactory
) -> FilledCache:
    from huggingface_hub import hf_hub_download

    cache_dir = tmp_path_factory.mktemp("filled-hf-cache")
    for revision in (published_zoo_model.sha, "main"):  # pinned, and the branch (refs/main)
        for filename in ("config.json", "model.safetensors"):
            hf_hub_download(
                published_zoo_model.repo_id, filename, revision=revision, cache_dir=str(cache_dir),
                endpoint=hub_server_instance.endpoint, token=False,
            )
    return FilledCache(cache_dir, published_zoo_model)
