"""Compute the per-channel normalisation scales of the VGG-19 encoder ("normalised VGG", Gatys et al.).

For every conv layer up to conv4_1, the scale is the mean ReLU activation of each channel of the raw
ImageNet VGG-19 over all positions of a set of natural photos (channels that never fire get 1). The
normalised encoder divides each channel by it, so every channel then averages 1 over such images.

    python scripts/compute_vgg_scales.py PHOTO_DIR [--size 384] [--limit 200]

writes adain/data/vgg19_norm_scales.safetensors (a few KB). Run once; the result is shipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from adain.images import load_image
from adain.networks import ENCODER_CONVS, ENCODER_LAYERS, Encoder
from adain.progress import Progress
from adain.tensorfile import save_tensors
from adain.weights import SCALES_PATH, load_imagenet_vgg19, raw_encoder_state


def all_relu_means(enc: Encoder, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-channel mean of every conv layer's ReLU output for one image batch (N, 3, H, W)."""
    y = enc.prep(x)
    means = {}
    for layer in ENCODER_LAYERS:
        if layer == "pool":
            y = F.max_pool2d(y, 2, 2, ceil_mode=True)
            continue
        y = F.relu(enc.convs[layer[0]](F.pad(y, (1, 1, 1, 1), mode="reflect")))
        means[layer[0]] = y.mean(dim=(0, 2, 3))
    return means


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path)
    ap.add_argument("--size", type=int, default=384, help="shorter side the photos are resized to")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("-o", "--output", type=Path, default=SCALES_PATH)
    args = ap.parse_args()
    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.limit]
    if not files:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    enc = Encoder()
    enc.load_state_dict(raw_encoder_state(load_imagenet_vgg19()))
    enc.eval()
    sums = {name: torch.zeros(0) for name in ENCODER_CONVS}
    with torch.inference_mode(), Progress(len(files), "scales") as bar:
        for i, path in enumerate(files):
            means = all_relu_means(enc, load_image(path, args.size).unsqueeze(0))
            for name, m in means.items():
                sums[name] = m.double() if i == 0 else sums[name] + m.double()
            bar.update(1)
    scales = {}
    for name, total in sums.items():
        mean = (total / len(files)).float()
        dead = mean <= 1e-6
        scales[name] = torch.where(dead, torch.ones_like(mean), mean)
        print(f"{name}: mean activation {mean.mean():.3f} (min {mean.min():.4f}, max {mean.max():.3f}), "
              f"{int(dead.sum())} dead channels")  # fmt: skip
    save_tensors(args.output, scales, {"images": str(len(files)), "size": str(args.size), "source": str(args.photos.name)})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
