"""Client tests: the client is imported from client/src, as a checkout has it (not pip-installed).

Fixtures here need no server; end-to-end tests use the session fixture of tests/conftest.py that
starts the real Triton and the real gateway.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENT_SRC = REPO / "client" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))


@pytest.fixture()
def free_port() -> int:
    """A loopback port that nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
