"""What a run ran on: captured once at ``start_run`` and carried by ``RunStarted``.

Every probe is best-effort and bounded in time: a missing git or nvidia-smi
never fails a run, it just leaves the field empty.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from functools import cache
from importlib import metadata
from typing import Any, NamedTuple

_TIMEOUT = 2.0


def _run(args: list[str], cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _strip_credentials(url: str) -> str:
    return re.sub(r"(?<=://)[^/@]+@", "", url)


def git_info(cwd: str | None = None) -> dict[str, Any]:
    """commit, branch, dirty flag and remote of the repository holding ``cwd`` (all None outside one).

    What ``git status --porcelain=v2 --branch --untracked-files=no`` says (commit, branch and dirty flag can
    change between runs of one process), run again only when it could say something else: its answer is
    reused while git's own files (HEAD, the branch's ref, the index, the config) and every tracked file
    keep the ``lstat`` they had before it ran, and none of them changed within ``REUSE_MARGIN_S`` of it
    (a change inside one timestamp tick would not show in ``lstat``: git's own "racy" rule). A repository
    with submodules is probed every time (their changes do not show in the super-project's files), and so
    is one with more than ``MAX_TRACKED`` files or where checking them took longer than git itself. The
    remote URL is read once per repository and process.
    """
    where = os.path.abspath(cwd or os.getcwd())
    key = (where, tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("GIT_"))))
    with _probes_lock:
        kept = _probes.get(key)
        if kept is not None:
            layout, signature, at_ns, info = kept
            if _signature(layout) == signature and not _racy(signature, at_ns):
                return dict(info)
        if shutil.which("git") is None:
            return dict.fromkeys(_GIT_FIELDS)
        if key in _git_faster:
            return _git_status(where)
        layout = _layout(where, key)
        if layout is None:  # no repository, a submodule, too many files: ask git every time, as before
            _git_faster.add(key)
            return _git_status(where)
        before_ns = time.time_ns()
        signature = _signature(layout)
        checked_ns = time.time_ns()
        info = _git_status(where)
        _probes.pop(key, None)
        if info["git_commit"] is None:
            return info
        if len(layout.tracked) > TIMED_ABOVE and checked_ns - before_ns > time.time_ns() - checked_ns:
            _git_faster.add(key)  # checking is dearer than asking git (a slow file system, say: git's C wins)
        else:
            _probes[key] = (layout, signature, before_ns, dict(info))
        return info


_GIT_FIELDS = ("git_commit", "git_branch", "git_dirty", "git_remote")
REUSE_MARGIN_S = 2.0
MAX_TRACKED = 5_000  # beyond, git's C (with its parallel index preload) checks the files faster than lstat here
TIMED_ABOVE = 1_000  # a larger tree whose check took longer than git is asked every time (below: ~ms, noise)
_probes_lock = threading.Lock()
_probes: dict[tuple, tuple[_Layout, tuple, int, dict[str, Any]]] = {}  # (cwd, GIT_* env) -> the last probe
_git_faster: set[tuple] = set()  # where git status costs less than checking the files
_dirs: dict[tuple, tuple[str, str, str]] = {}  # (cwd, GIT_* env) -> (git dir, common dir, top level)
_tracked: dict[str, tuple[tuple | None, tuple[str, ...] | None]] = {}  # git dir -> (its index's lstat, tracked)


class _Layout(NamedTuple):
    git_dir: str  # HEAD and the index (a worktree's own directory)
    common_dir: str  # refs, packed-refs, config
    top: str  # the working tree's root
    tracked: tuple[str, ...]  # the index's entries, as absolute paths


def _git_status(cwd: str) -> dict[str, Any]:
    info: dict[str, Any] = dict.fromkeys(_GIT_FIELDS)
    status = _run(["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"], cwd)
    if status is None:
        return info
    changed = False
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            info["git_commit"] = line.split()[2]
        elif line.startswith("# branch.head "):
            head = line.split(maxsplit=2)[2]
            info["git_branch"] = "HEAD" if head == "(detached)" else head
        elif line and not line.startswith("#"):
            changed = True
    if not info["git_commit"] or info["git_commit"] == "(initial)":  # no commit yet
        return dict.fromkeys(info)
    info["git_dirty"] = changed
    info["git_remote"] = _remote(cwd)
    return info


def _layout(cwd: str, key: tuple) -> _Layout | None:
    """Where the repository holding ``cwd`` keeps its files, and what it tracks; None outside a repository
    or when an answer could not be reused (submodules, an unreadable index listing)."""
    dirs = _dirs.get(key)
    if dirs is None or not os.path.isdir(dirs[0]):
        out = _run(["git", "rev-parse", "--absolute-git-dir", "--git-common-dir", "--show-toplevel"], cwd)
        lines = out.splitlines() if out else []
        if len(lines) != 3:
            return None
        dirs = _dirs[key] = (lines[0], os.path.normpath(os.path.join(cwd, lines[1])), lines[2])
    git_dir, common, top = dirs
    index = _lstat(os.path.join(git_dir, "index"))
    known = _tracked.get(git_dir)
    if known is None or known[0] != index or index is None:
        known = (index, _tracked_paths(top))
        _tracked[git_dir] = known
    if known[1] is None:
        return None
    return _Layout(git_dir, common, top, known[1])


def _tracked_paths(top: str) -> tuple[str, ...] | None:
    """The index's paths (None with a submodule among them, more than ``MAX_TRACKED``, or if git could not
    list them)."""
    try:
        out = subprocess.run(["git", "ls-files", "--stage", "-z"], cwd=top, capture_output=True,
                             timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or out.stdout.count(b"\0") > MAX_TRACKED:
        return None
    paths = []
    for entry in out.stdout.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        if meta.startswith(b"160000"):  # a submodule
            return None
        paths.append(os.path.join(top, os.fsdecode(path)))
    return tuple(paths)


def _lstat(path: str) -> tuple | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_mode)


def _signature(layout: _Layout) -> tuple:
    """The ``lstat`` of every file whose change could change ``git status``'s answer."""
    head = os.path.join(layout.git_dir, "HEAD")
    try:
        with open(head, "rb") as f:
            target = f.read(4096).strip()
    except OSError:
        target = b""
    ref = target[5:].strip().decode(errors="replace") if target.startswith(b"ref:") else None
    own = [head, os.path.join(layout.git_dir, "index"), os.path.join(layout.common_dir, "packed-refs"),
           os.path.join(layout.common_dir, "config"), os.path.join(layout.git_dir, "config.worktree"),
           os.path.join(layout.common_dir, "reftable", "tables.list"), os.path.join(layout.common_dir, "info"),
           os.path.expanduser("~/.gitconfig"),
           os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "git", "config")]
    if ref:
        own += [os.path.join(layout.common_dir, ref), os.path.join(layout.git_dir, ref)]
    return (target, *map(_lstat, own), *map(_lstat, layout.tracked))


def _racy(signature: tuple, at_ns: int) -> bool:
    """Did any file change within ``REUSE_MARGIN_S`` of the probe (or after it)?"""
    bound = at_ns - int(REUSE_MARGIN_S * 1e9)
    return any(st is not None and (st[0] >= bound or st[1] >= bound) for st in signature[1:])


@cache
def _remote(cwd: str) -> str | None:
    remote = _run(["git", "config", "--get", "remote.origin.url"], cwd)
    return _strip_credentials(remote) if remote else None


def gpus() -> list[str]:
    """Visible GPUs: NVIDIA via nvidia-smi (honours CUDA_VISIBLE_DEVICES), else none."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return []
    if shutil.which("nvidia-smi") is None:
        return []
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"])
    return [line.strip() for line in out.splitlines() if line.strip()] if out else []


@cache
def packages() -> dict[str, str]:
    """Installed distributions, name -> version (cached per process: it does not change under us)."""
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out[name] = dist.version or ""
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def capture() -> dict[str, Any]:
    """The ``Environment`` record of RunStarted for this process."""
    cwd = os.getcwd()
    return {
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count() or 0,
        "memory_bytes": memory_bytes(),
        "gpus": gpus(),
        "command": [sys.executable, *sys.argv],
        "working_dir": cwd,
        **git_info(cwd),
        "packages": packages(),
    }
