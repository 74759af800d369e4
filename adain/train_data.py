"""Training batches: image pools from a corpus or folders, and deterministic batches per iteration.

Every batch is drawn from a generator seeded by (seed, iteration), so a resumed run sees exactly the
batches an uninterrupted one would. The first ``recon`` samples of a batch are **reconstruction
samples**: their style image is their own content crop, so the AdaIN target is the content's own
features (the α = 0 case the decoder must also get right).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adain.errors import InputError
from adain.images import resize_shorter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class Pool:
    """Image files of one kind with sampling weights (normalised)."""

    files: list[Path]
    weights: np.ndarray


@dataclass(frozen=True)
class Sampling:
    """How the corpus is sampled: the data side of the training recipe."""

    painting_weight: float = 3.0  # real paintings are drawn this many times as often as other styles
    texture_share: float = 0.45  # share of content draws that are photographic textures (rest: photos)
    content_side: int = 512  # content images are resized to this shorter side before cropping
    style_side_min: int = 256  # styles are viewed as if their shorter side were drawn from [min, max]
    style_side_max: int = 768


def folder_pool(folder: Path) -> Pool:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images in {folder}")
    return Pool(files, np.full(len(files), 1.0 / len(files)))


def corpus_pools(corpus: Path, sampling: Sampling = Sampling()) -> tuple[Pool, Pool]:
    """(content, style) pools of the corpus's train split, weighted by ``sampling``."""
    if not 0.0 <= sampling.texture_share <= 1.0:
        raise InputError(f"the texture share must be in [0, 1], got {sampling.texture_share}")
    if sampling.painting_weight <= 0:
        raise InputError(f"the painting weight must be positive, got {sampling.painting_weight}")
    manifest = corpus / "manifest.csv"
    if not manifest.is_file():
        raise InputError(f"{manifest} not found: build the corpus with scripts/build_corpus.py")
    rows = [r for r in csv.DictReader(manifest.open()) if r["split"] == "train"]
    pools = []
    for kind in ("content", "style"):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            raise InputError(f"{manifest} has no training {kind} images")
        missing = [r["file"] for r in sel if not (corpus / r["file"]).is_file()]
        if missing:
            raise InputError(
                f"{manifest} lists {len(missing)} {kind} file(s) that are not in {corpus} (first: {missing[0]}): "
                "the manifest and the images come from different builds; rebuild with scripts/build_corpus.py"
            )
        w = np.array([sampling.painting_weight if r["category"] == "painting" else 1.0 for r in sel])
        if kind == "content":
            tex = np.array([r["category"] == "texture" for r in sel])
            if tex.any() and (~tex).any():
                w = np.where(tex, sampling.texture_share / tex.sum(), (1 - sampling.texture_share) / (~tex).sum())
        pools.append(Pool([corpus / r["file"] for r in sel], w / w.sum()))
    return pools[0], pools[1]


class ImageCache:
    """Decoded images, resized once so their shorter side is ``side``, kept in memory as uint8."""

    def __init__(self, side: int) -> None:
        self.side = side
        self._cache: dict[Path, np.ndarray] = {}

    def get(self, path: Path) -> np.ndarray:
        arr = self._cache.get(path)
        if arr is None:
            with Image.open(path) as im:
                arr = np.asarray(resize_shorter(im.convert("RGB"), self.side))
            self._cache[path] = arr
        return arr


def _crop(arr: np.ndarray, window: int, out: int, rng: random.Random) -> torch.Tensor:
    h, w = arr.shape[:2]
    window = min(window, h, w)
    y, x = rng.randint(0, h - window), rng.randint(0, w - window)
    patch = arr[y : y + window, x : x + window]
    if window != out:
        patch = np.asarray(Image.fromarray(patch).resize((out, out), Image.Resampling.BILINEAR))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return torch.from_numpy(np.array(patch)).permute(2, 0, 1).float() / 255.0


class BatchSource:
    """Deterministic batches: batch ``i`` depends only on (seed, i), never on what ran before."""

    def __init__(self, content: Pool, style: Pool, sampling: Sampling, batch: int, crop: int, seed: int) -> None:
        self.content, self.style, self.sampling = content, style, sampling
        self.size, self.crop, self.seed = batch, crop, seed
        self.content_cache = ImageCache(sampling.content_side)
        self.style_cache = ImageCache(sampling.style_side_max)

    def batch(self, iteration: int, recon: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(contents, styles), each (batch, 3, crop, crop); the first ``recon`` styles are their contents."""
        rng = random.Random(f"{self.seed}:{iteration}")
        nprng = np.random.default_rng([self.seed, iteration])
        ci = nprng.choice(len(self.content.files), self.size, p=self.content.weights)
        si = nprng.choice(len(self.style.files), self.size, p=self.style.weights)
        contents = [_crop(self.content_cache.get(self.content.files[i]), self.crop, self.crop, rng) for i in ci]
        styles = []
        for i in si:
            # Style statistics depend on scale: view the style as if its shorter side were s in [min, max].
            s = rng.randint(max(self.sampling.style_side_min, self.crop), self.sampling.style_side_max)
            window = round(self.crop * self.sampling.style_side_max / s)
            styles.append(_crop(self.style_cache.get(self.style.files[i]), window, self.crop, rng))
        # The draws above do not depend on ``recon``, so changing it never changes the other samples.
        styles[:recon] = contents[:recon]
        return torch.stack(contents), torch.stack(styles)
