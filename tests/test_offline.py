"""Offline and no-network behaviour of pretrained loads (issue 2, part 5)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
import safetensors.torch

import repfusion_zoo
from repfusion_zoo.errors import NoNetworkError
from repfusion_zoo import load_pretrained
from repfusion_zoo.hub.network import endpoint_reachable, guarded_pretrained_load

from _hub_fixtures import point_hub_at, same_weights

UNPUBLISHED_SHA = "0123456789abcdef0123456789abcdef01234567"
BLACKHOLE = "http://10.255.255.1"  # non-routable: a connect hangs (or fails at once) instead of being refused
FAIL_FAST_S = 5.0  # the behaviour bound, not a speed benchmark


def _assert_names_the_ways_out(error: NoNetworkError, name: str, pinned: str) -> None:
    message = str(error)
    assert name in message and pinned in message
    ways_out = ("HF_HUB_OFFLINE=1", "pretrained_cfg_overlay=dict(file=", "folder", f"repfusion-zoo prefetch {name}")
    for way_out in ways_out:
        assert way_out in message, way_out


def test_offline_with_filled_cache_makes_no_network_call(filled_hub_cache, hub_server_instance, tmp_path, repo_root):
    """In a fresh process (huggingface_hub reads HF_* at import): HF_HUB_OFFLINE=1, a filled cache, and
    HF_ENDPOINT at the live local Hub, whose request log must not grow. torch.hub through hubconf.py too."""
    published = filled_hub_cache.published
    out = tmp_path / "offline.safetensors"
    code = textwrap.dedent(f"""
        import safetensors.torch, repfusion_zoo
        from repfusion_zoo import load_pretrained
        pinned = repfusion_zoo.create_model({published.name!r}, pretrained=True,
                                            pretrained_cfg_overlay=dict(hf_hub_id={published.hf_hub_id!r}))
        unpinned = load_pretrained("hf-hub:{published.repo_id}")  # branch main, resolved from the cache refs
        for a, b in zip(pinned.state_dict().values(), unpinned.state_dict().values()):
            assert (a == b).all()
        import torch
        overlay = dict(hf_hub_id={published.hf_hub_id!r})
        hub_model = torch.hub.load({str(repo_root)!r}, {published.name!r}, source="local", pretrained=True,
                                   pretrained_cfg_overlay=overlay)
        for a, b in zip(pinned.state_dict().values(), hub_model.state_dict().values()):
            assert (a == b).all()
        features = torch.hub.load({str(repo_root)!r}, {published.name!r}, source="local", pretrained=True,
                                  features_only=True, pretrained_cfg_overlay=overlay)
        maps = features(torch.randn(1, 3, 32, 32))
        assert [m.shape[1] for m in maps] == features.feature_info.channels()
        assert torch.equal(features.stem.weight, pinned.stem.weight)
        safetensors.torch.save_file(pinned.state_dict(), {str(out)!r})
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(filled_hub_cache.cache_dir),
           "HF_ENDPOINT": hub_server_instance.endpoint, "HF_HUB_DISABLE_XET": "1"}
    before = len(hub_server_instance.state.requests)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert hub_server_instance.state.requests[before:] == []  # no network call at all
    assert same_weights(safetensors.torch.load_file(out), safetensors.torch.load_file(published.weights))


def test_no_network_but_cached_loads_without_retries(filled_hub_cache, closed_port_endpoint, monkeypatch):
    published = filled_hub_cache.published
    point_hub_at(monkeypatch, closed_port_endpoint, filled_hub_cache.cache_dir)
    start = time.perf_counter()
    model = load_pretrained(f"hf-hub:{published.repo_id}")  # not pinned: must fall back to the cache at once
    assert time.perf_counter() - start < FAIL_FAST_S
    assert same_weights(model.state_dict(), safetensors.torch.load_file(published.weights))


@pytest.mark.parametrize("endpoint", ["closed_port", "blackhole"])
def test_no_network_no_cache_fails_fast_naming_model_and_repo(endpoint, closed_port_endpoint, monkeypatch, tmp_path):
    name = "resnet18_repfusion_cifar10"
    if name not in repfusion_zoo.list_models():
        pytest.skip("zoo entry not registered")
    url = closed_port_endpoint if endpoint == "closed_port" else BLACKHOLE
    point_hub_at(monkeypatch, url, tmp_path / "empty-cache")
    hub_id = f"repfusion-zoo/{name}@{UNPUBLISHED_SHA}"
    start = time.perf_counter()
    with pytest.raises(NoNetworkError) as info:
        repfusion_zoo.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=hub_id))
    assert time.perf_counter() - start < FAIL_FAST_S
    _assert_names_the_ways_out(info.value, name, hub_id)


def test_offline_mode_without_cache_fails_at_once(monkeypatch, tmp_path, hub_server_instance):
    point_hub_at(monkeypatch, hub_server_instance.endpoint, tmp_path / "empty-cache", offline=True)
    before = len(hub_server_instance.state.requests)
    start = time.perf_counter()
    with pytest.raises(NoNetworkError, match="HF_HUB_OFFLINE=1 is set") as info:
        load_pretrained(f"hf-hub:repfusion-test/absent@{UNPUBLISHED_SHA}")
    assert time.perf_counter() - start < FAIL_FAST_S
    assert f"repfusion-test/absent@{UNPUBLISHED_SHA}" in str(info.value)
    assert hub_server_instance.state.requests[before:] == []


def test_guard_passes_through_local_loads_and_probes_the_endpoint(hub_server, closed_port_endpoint):
    assert guarded_pretrained_load("m", None, lambda local_files_only: 42) == 42  # no Hub involved: nothing checked
    assert endpoint_reachable(hub_server, timeout=2.0)
    assert not endpoint_reachable(closed_port_endpoint, timeout=2.0)
