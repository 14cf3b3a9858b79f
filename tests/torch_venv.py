"""Build (or check) tests/.venv-torch: the venv the autologging tests of PyTorch Lightning and the
Hugging Face Trainer run their training in (tests/integration/test_autolog_torch.py).

torch is too heavy for the ``test`` extras (docs/integrations.md has the figures), so it lives in a venv
of its own, built from the pinned tests/requirements-torch.txt plus modelog itself (editable), and kept
while the pins (and modelog's dependencies) match. modelog goes in without faust-streaming, which only the
processor needs (it runs in the project's venv): faust-streaming wants click < 8.2 and huggingface-hub,
under transformers 5, click >= 8.4.2. One command builds it::

    python3 tests/torch_venv.py

The tests use it when it is there and skip, naming this command, when it is not.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
VENV = TESTS / ".venv-torch"
REQUIREMENTS = TESTS / "requirements-torch.txt"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / REQUIREMENTS.name
LEFT_OUT = {"faust-streaming"}  # the processor's; it clashes with transformers' huggingface-hub over click


def pins(text: str) -> list[str]:
    return sorted(line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip())


def modelog_dependencies() -> list[str]:
    """modelog's own dependencies (pyproject.toml) less LEFT_OUT."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not any(d.startswith(name) for name in LEFT_OUT)]


def wanted() -> str:
    return REQUIREMENTS.read_text() + "".join(f"{d}\n" for d in modelog_dependencies())


def ready() -> bool:
    """The venv is there and was built from the current pins and modelog's current dependencies."""
    return PYTHON.exists() and STAMP.exists() and pins(STAMP.read_text()) == pins(wanted())


def build() -> Path:
    """Create the venv (again, when the pins changed) and install the pins and modelog; returns its python."""
    if ready():
        return PYTHON
    base = getattr(sys, "_base_executable", None) or "python3"
    pip = [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS), *modelog_dependencies()], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(wanted())
    return PYTHON


if __name__ == "__main__":
    print(f"{VENV}: {'up to date' if ready() else 'building'}", flush=True)
    print(build())
