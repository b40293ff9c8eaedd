"""Offline / no-network detection around pretrained loads, and the error that names the ways out.

Without network, huggingface_hub retries a download for about 47 s and then raises an error
that names neither the model nor the repo: huggingface_hub has no fast failure of its own, so
`guarded_pretrained_load` wraps a load ``load(local_files_only)`` (which passes the flag to its
`hf_hub_download` / `snapshot_download` calls) so that:

* with ``HF_HUB_OFFLINE=1`` and a filled cache it runs from the cache (huggingface_hub then makes
  no network call); with an empty cache it fails at once with `NoNetworkError`;
* with the Hub endpoint unreachable (a TCP connect probe of ``HF_ENDPOINT``'s host, or of the
  proxy in front of it, bounded by ``REPFUSION_HUB_PROBE_TIMEOUT`` seconds, default 2) it
  loads with ``local_files_only=True`` when the weight is cached, else fails in a few seconds
  with `NoNetworkError` naming the model, ``repo@revision`` and the ways out;
* with the endpoint reachable it runs the load, and still turns a connection failure during
  the load into `NoNetworkError`.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

from ..errors import NoNetworkError
from .format import WEIGHTS_NAME

T = TypeVar("T")

REGEX_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
DEFAULT_PROBE_TIMEOUT_S = 2.0

__all__ = [
    "guarded_pretrained_load",
    "no_network_error",
    "endpoint_reachable",
    "hub_endpoint",
    "is_offline",
    "is_cached",
    "split_hub_id",
]


def split_hub_id(hf_hub_id: str) -> tuple[str, str | None]:
    """``"org/repo@rev"`` (optionally prefixed ``hf-hub:``) -> ``("org/repo", "rev" | None)``."""
    hf_hub_id = hf_hub_id.removeprefix("hf-hub:")
    repo_id, _, revision = hf_hub_id.partition("@")
    return repo_id, (revision or None)


def hub_endpoint() -> str:
    """The endpoint huggingface_hub actually uses (read by it once, at import, from ``HF_ENDPOINT``)."""
    return constants.ENDPOINT


def is_offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1`` at its import, or forced)."""
    return bool(constants.is_offline_mode())


def _probe_address(endpoint: str) -> tuple[str, int] | None:
    """Host and port a client must reach for ``endpoint``: the proxy's if one applies."""
    parts = urlsplit(endpoint)
    if not parts.hostname:
        return None
    proxy = None
    if not urllib.request.proxy_bypass(parts.hostname):
        proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy:
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxy_parts.hostname:
            return proxy_parts.hostname, proxy_parts.port or (443 if proxy_parts.scheme == "https" else 80)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _probe_timeout() -> float:
    try:
        return float(os.environ.get("REPFUSION_HUB_PROBE_TIMEOUT", DEFAULT_PROBE_TIMEOUT_S))
    except ValueError:
        return DEFAULT_PROBE_TIMEOUT_S


def endpoint_reachable(endpoint: str | None = None, timeout: float | None = None) -> bool:
    """Whether a TCP connect to the Hub endpoint (or its proxy) succeeds within ``timeout`` seconds.

    The name lookup and the connect run in a daemon thread, so a hanging resolver is bounded
    too; nothing is sent.
    """
    address = _probe_address(endpoint or hub_endpoint())
    if address is None:
        return False
    timeout = _probe_timeout() if timeout is None else timeout
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    probe = threading.Thread(target=connect, name="repfusion-hub-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(result and result[0])


def is_cached(
    repo_id: str,
    revision: str | None,
    filename: str | tuple[str, ...] = WEIGHTS_NAME,
    cache_dir: str | Path | None = None,
) -> bool:
    """Whether ``filename`` (every one of them) of ``repo_id@revision`` is in the local Hub cache (no network)."""
    names = (filename,) if isinstance(filename, str) else filename
    cache = None if cache_dir is None else str(cache_dir)
    return all(isinstance(try_to_load_from_cache(repo_id, n, cache_dir=cache, revision=revision), str) for n in names)


def no_network_error(name: str, hf_hub_id: str, reason: str) -> NoNetworkError:
    """The error that names the model, ``repo@revision`` and every way out."""
    repo_id, revision = split_hub_id(hf_hub_id)
    pinned = f"{repo_id}@{revision or 'main'}"
    return NoNetworkError(
        f"Cannot load the pretrained weight of {name!r} from the Hugging Face Hub repo {pinned} "
        f"({reason}). Ways out:\n"
        f"  - on a machine with network, fill the cache with `repfusion-zoo prefetch {name}`, then "
        f"copy the cache (HF_HUB_CACHE) here and set HF_HUB_OFFLINE=1;\n"
        f"  - load a local file: create_model({name!r}, pretrained=True, "
        f"pretrained_cfg_overlay=dict(file='/path/to/model.safetensors'));\n"
        f"  - load a local folder holding config.json + model.safetensors: "
        f"repfusion_zoo.load_pretrained('/path/to/folder');\n"
        f"  - or use pretrained=False for random initial weights."
    )


def _network_failure_types() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises when the Hub cannot be reached (its HTTP client differs by version)."""
    types: list[type[BaseException]] = [LocalEntryNotFoundError, OfflineModeIsEnabled]
    for module_name, names in (("httpx2", ("ConnectError", "TimeoutException")),
                               ("httpx", ("ConnectError", "TimeoutException")),
                               ("requests.exceptions", ("ConnectionError", "Timeout"))):
        with contextlib.suppress(ImportError):
            module = importlib.import_module(module_name)
            types += [getattr(module, n) for n in names if hasattr(module, n)]
    return tuple(types)


def guarded_pretrained_load(
    name: str,
    hf_hub_id: str | None,
    load: Callable[[bool], T],
    *,
    filename: str | tuple[str, ...] = WEIGHTS_NAME,
    cache_dir: str | Path | None = None,
) -> T:
    """Run ``load(local_files_only)`` (a pretrained load that may download ``hf_hub_id``), failing fast without network.

    Args:
        name: the model name to put in errors (e.g. ``"resnet18_repfusion_cifar10"``).
        hf_hub_id: ``"org/repo@revision"`` the weight comes from; None (a local file, no Hub) runs
            ``load()`` as is.
        load: does the download and load; passes its ``local_files_only`` argument to huggingface_hub.
        filename: the file(s) whose presence in the cache decides an offline load.
        cache_dir: the Hub cache to look in (default: huggingface_hub's ``HF_HUB_CACHE``).

    Returns:
        whatever ``load`` returns.

    Raises:
        NoNetworkError: no network (or offline mode) and the weight is not cached, within a few
            seconds; names ``name``, ``repo@revision`` and the ways out.
    """
    if not hf_hub_id:
        return load(False)
    repo_id, revision = split_hub_id(hf_hub_id)
    if revision and REGEX_COMMIT_HASH.fullmatch(revision) and is_cached(repo_id, revision, filename, cache_dir):
        # a pinned commit already in the cache: no request needed
        return _run(name, hf_hub_id, load, True, "the cached copy is incomplete")
    if is_offline():
        return _run(name, hf_hub_id, load, True, "HF_HUB_OFFLINE=1 is set and the weight is not in the cache")
    if endpoint_reachable():
        return _run(name, hf_hub_id, load, False, f"the Hub endpoint {hub_endpoint()} failed during the download")
    if is_cached(repo_id, revision, filename, cache_dir):
        return _run(name, hf_hub_id, load, True, "no network and the cached copy is incomplete")
    raise no_network_error(
        name, hf_hub_id, f"no network: {hub_endpoint()} is unreachable and the weight is not in the cache"
    )


def _run(name: str, hf_hub_id: str, load: Callable[[bool], T], local_files_only: bool, reason: str) -> T:
    """``load(local_files_only)``, turning a failure to reach the Hub into `NoNetworkError` (other errors pass through)."""
    try:
        return load(local_files_only)
    except Exception as error:
        if isinstance(error, _network_failure_types()):
            raise no_network_error(name, hf_hub_id, f"{reason}: {type(error).__name__}") from error
        raise
