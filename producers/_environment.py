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
    """commit, branch, dirty flag and remote of the repository holding ``cwd`` (all None outside one)."""
    info: dict[str, Any] = {"git_commit": None, "git_branch": None, "git_dirty": None, "git_remote": None}
    if shutil.which("git") is None:
        return info
    commit = _run(["git", "rev-parse", "HEAD"], cwd)
    if not commit:
        return info
    info["git_commit"] = commit
    info["git_branch"] = _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd)
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd)
    info["git_dirty"] = None if status is None else bool(status)
    remote = _run(["git", "config", "--get", "remote.origin.url"], cwd)
    info["git_remote"] = _strip_credentials(remote) if remote else None
    return info


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
