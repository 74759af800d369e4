"""Shared fixtures: the real model with the shipped weights, and the shipped sample images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SAMPLES = Path(__file__).resolve().parents[1] / "adain" / "data" / "samples"


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def model():
    """The shipped decoder with our normalised encoder, CPU, fp32 (deterministic comparisons)."""
    from adain import StyleTransfer

    torch.manual_seed(0)
    return StyleTransfer.load_default(device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def content_img(samples):
    from adain.images import load_image

    return load_image(samples / "content_coffee.jpg", 128)


@pytest.fixture(scope="session")
def style_imgs(samples):
    from adain.images import load_image

    return [load_image(p, 128) for p in sorted(samples.glob("style_*.jpg"))]


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> str:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    return request.param
