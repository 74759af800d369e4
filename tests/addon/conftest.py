"""Fixtures for the add-on's bpy-free parts: a client of a real backend (the shipped model) on tcp loopback."""

from __future__ import annotations

import pytest

from addon.client import Client


@pytest.fixture
def real(serve):
    """A client of a real backend running the shipped decoder (CPU, fp32)."""
    server = serve()
    with Client(server.endpoint, timeout=60) as client:
        yield client
