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
from functools import cache
from importlib import metadata
from typing import Any

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

    One ``git status --porcelain=v2 --branch`` per call (commit, branch and dirty flag can change between
    runs of one process); the remote URL is read once per repository and process.
    """
    info: dict[str, Any] = {"git_commit": None, "git_branch": None, "git_dirty": None, "git_remote": None}
    if shutil.which("git") is None:
        return info
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
    info["git_remote"] = _remote(os.path.abspath(cwd or os.getcwd()))
    return info


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
