"""Shared fixtures. Integration fixtures (broker, processor) live in tests/integration/conftest.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # factories
