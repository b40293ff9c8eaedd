"""Atomic writes of a folder or a file that heal after a kill (every part that writes uses them).

`atomic_folder(target)` yields an empty temp folder beside ``target``; when the block ends
without error the temp folder takes ``target``'s place, else it is removed. `replace_file(path,
write)` does the same for one file: ``write(temp_path)`` fills a temp file beside it, which is
fsynced and renamed onto ``path`` (one rename, no ``.old-``); `replace_text(path, text)` is that
for text, after healing what killed writers left (`update_card_metrics`, the cache, subsets and
the experiment's results use it).
The hidden names beside ``target`` carry their writer (``<host>`` is this machine's name,
``-`` and other unusual characters as ``_``):

* ``.<name>.tmp-<host>-<pid>-<random>``: a folder (or file) being written;
* ``.<name>.old-<host>-<pid>-<random>``: the previous ``target``, between the two renames of a
  replace (``target`` -> ``.old-``, then ``.tmp-`` -> ``target``).

A SIGKILL can leave a ``.tmp-`` folder beside an intact (or absent) ``target``; a kill between
the two renames leaves no ``target``, the complete previous folder under ``.old-`` and the new
one under ``.tmp-``. `recover(target)` heals both. Recovery belongs to the writers
(`atomic_folder`, `replace_text`, so the next save or `update_card_metrics`) and to the explicit
command ``repfusion-zoo recover FOLDER``; a load never changes the disk (a read-only folder, or
one another process is writing, loads or fails with `describe_leftovers`' explanation):

* ``target`` missing: the newest ``.old-`` of a dead writer is renamed back, so a killed save
  did not happen (its ``.tmp-`` is never promoted: a save is all or nothing), unless a live
  writer is between its own two renames (it has an ``.old-`` too): that one finishes its swap;
* every other ``.tmp-`` / ``.old-`` of a dead writer is removed.

Dead writer: its host is this host and no process has its pid (``os.kill(pid, 0)``). Leftovers
of live processes (a concurrent writer, this process included) and of other hosts (a folder on
a shared filesystem written from another machine) are never touched, so recovery is safe beside
concurrent writers; another host's leftovers are healed by the next save or load there. A pid
recycled by an unrelated process only delays the clean-up. Names without a writer (none of this
module's) are never touched.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterator

from .errors import ConfigError

__all__ = ["atomic_folder", "replace_file", "replace_text", "write_text", "recover", "leftover_path",
           "describe_leftovers", "fsync_folder", "add_parser"]

HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"
KINDS = ("tmp", "old")


def _prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-"


def leftover_path(target: str | Path, kind: str, pid: int | None = None) -> Path:
    """A fresh ``.<name>.<kind>-<host>-<pid>-<random>`` path beside ``target`` (default: this process)."""
    target = Path(target)
    writer = f"{HOST}-{os.getpid() if pid is None else pid}-{uuid.uuid4().hex[:8]}"
    return target.with_name(_prefix(target, kind) + writer)


def _writer_is_dead(rest: str) -> bool | None:
    """For ``<host>-<pid>-<random>``: True when that process of this host no longer runs, False
    when it (or a process with its pid) runs, None when the name is not ours or from another host."""
    parts = rest.split("-")
    if len(parts) != 3 or parts[0] != HOST or not parts[1].isdigit() or int(parts[1]) <= 0:
        return None
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, under another user
        return False
    return False


def _leftovers(target: Path) -> dict[tuple[str, bool | None], list[Path]]:
    """The leftovers beside ``target`` by (kind, whether the writer is dead): ``("old", True): [...]``."""
    found: dict[tuple[str, bool | None], list[Path]] = {(k, d): [] for k in KINDS for d in (True, False, None)}
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in target.parent.iterdir():
            for kind in KINDS:
                prefix = _prefix(target, kind)
                if entry.name.startswith(prefix):
                    found[kind, _writer_is_dead(entry.name[len(prefix):])].append(entry)
    return found


def describe_leftovers(target: str | Path) -> str:
    """Why ``target`` may be missing, from the names beside it (reads only; "" when nothing is there)."""
    target = Path(target)
    found = _leftovers(target)
    notes = []
    live = found["old", False] + found["tmp", False]
    if live:
        pids = sorted({p.name.split("-")[-2] for p in live})
        who = f"process {pids[0]} on this host is" if len(pids) == 1 else f"processes {', '.join(pids)} on this host are"
        notes.append(f"{who} writing it now; retry once it has finished")
    elif found["old", True]:
        notes.append(f"a save was killed while replacing it: the previous folder waits at {found['old', True][0].name!r}; "
                     f"`repfusion-zoo recover {target}` (or the next save there) puts it back")
    elif found["tmp", True]:
        notes.append("a save was killed before it finished (its partial folder is never used); save it again")
    remote = found["old", None] + found["tmp", None]
    if remote:
        notes.append(f"{', '.join(p.name for p in remote)} beside it come from another host: run recovery there")
    return " ".join(n[0].upper() + n[1:] + "." for n in notes)


def _remove(path: Path) -> None:
    """Remove a folder tree, a file or a symlink; whatever is already gone or refuses stays quiet."""
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _ctime(path: Path) -> float:
    try:
        return path.lstat().st_ctime
    except OSError:
        return float("-inf")


def recover(target: str | Path) -> Path:
    """Heal what killed writers left beside ``target`` (see the module doc); return ``target``.

    Cheap (one listing of the parent folder) and safe to run any time, by any number of
    processes at once.
    """
    target = Path(target)
    found = _leftovers(target)
    dead_old = found["old", True]
    # a live writer between its renames (its own ``.old-``) puts the folder back itself
    if dead_old and not found["old", False] and not target.exists():
        with contextlib.suppress(OSError):  # another process restored or wrote it first
            os.replace(max(dead_old, key=_ctime), target)
    for path in found["tmp", True] + dead_old:
        _remove(path)
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` folder to ``target``: one rename when ``target`` is new.

    An existing folder is first renamed aside, then removed: a kill in between leaves the old
    complete folder under a ``.old-`` name (which `recover` renames back), never half. An error
    in the second rename puts the old folder back at once.
    """
    if not target.exists():
        os.replace(tmp, target)
        return
    if not target.is_dir():
        raise ConfigError(f"{str(target)!r} exists and is not a folder; choose another target.")
    old = leftover_path(target, "old")
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.replace(old, target)
        raise
    _remove(old)


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``target``; on success it replaces ``target`` atomically.

    Leftovers of killed writers beside ``target`` are healed first (`recover`); on error the
    temp folder is removed and ``target`` stays as it was. The parent folder is created.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_prefix(target, 'tmp')}{HOST}-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        follow_umask(tmp)
        _swap_in(tmp, target)
    finally:
        _remove(tmp)


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give ``path`` (and, for a folder, everything in it) the modes a plain ``open`` / ``mkdir`` would:
    ``0o666`` / ``0o777`` less the umask. ``mkdtemp`` and some writers (safetensors) make owner-only
    files, which a shared model folder must not be."""
    mask = current_umask()
    for entry in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not entry.is_symlink():
            entry.chmod((0o777 if entry.is_dir() else 0o666) & ~mask)

def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` and fsync it."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def fsync_folder(path: Path) -> None:
    """fsync a folder (its entries: a rename inside it is on disk); quiet where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_file(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(temp)`` into a hidden temp file beside ``path``, fsync it, rename it onto ``path``.

    A kill leaves ``path`` as it was (or absent) and at most a dead writer's temp file, which
    `recover` removes; the parent folder is created. Nothing else beside ``path`` is listed or
    healed (cheap for many files in one folder: `replace_text` heals first).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = leftover_path(path, "tmp")
    try:
        write(tmp)
        _fsync_file(tmp)
        follow_umask(tmp)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    return path


def replace_text(path: str | Path, text: str) -> None:
    """Replace the file ``path`` by ``text`` atomically (a temp file beside it, then one rename);
    stale temp files of killed writers beside it are removed first (`recover`)."""
    replace_file(recover(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def add_parser(subparsers) -> None:  # noqa: ANN001  (argparse's private sub-parsers type)
    """``repfusion-zoo recover FOLDER ...``: heal what killed saves left beside each folder."""
    parser = subparsers.add_parser(
        "recover", help="put back a folder a killed save left aside and remove dead writers' temp folders",
        description=recover.__doc__,
    )
    parser.add_argument("folders", nargs="+", metavar="FOLDER")

    def run(args) -> int:  # noqa: ANN001
        for folder in args.folders:
            target = recover(folder)
            print(f"recover {folder}: {'present' if target.exists() else 'absent'}"
                  + (f" ({describe_leftovers(target)})" if describe_leftovers(target) else ""))
        return 0

    parser.set_defaults(func=run)
