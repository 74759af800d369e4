"""addon/exr.py: the uncompressed multilayer OpenEXR the engine hook reads back (no bpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from addon import exr


def test_layers_round_trip_in_blender_row_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgba, vec, crypto = (rng.random((5, 7, 4), dtype=np.float32) for _ in range(3))
    exr.write_layers(
        tmp_path / "a.exr",
        {
            "View Layer.001": {"Combined": ("RGBA", rgba), "Vector": ("XYZW", vec), "CryptoObject00": ("rgba", crypto)},
            "Composite": {"Combined": ("RGBA", rgba * 2)},
        },
    )
    layers = exr.read_layers(tmp_path / "a.exr")
    np.testing.assert_array_equal(layers["View Layer.001"]["Combined"], rgba)
    np.testing.assert_array_equal(layers["View Layer.001"]["Vector"], vec)
    np.testing.assert_array_equal(layers["View Layer.001"]["CryptoObject00"], crypto)  # lower-case channels, in order
    np.testing.assert_array_equal(layers["Composite"]["Combined"], rgba * 2)


def test_other_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "b.exr").write_bytes(b"not an exr")
    with pytest.raises(exr.ExrError):
        exr.read_layers(tmp_path / "b.exr")


CRYPTO = {
    "cryptomatte/542cafa/name": ("string", b"ViewLayer.CryptoObject"),
    "cryptomatte/542cafa/hash": ("string", b"MurmurHash3_32"),
    "cryptomatte/542cafa/conversion": ("string", b"uint32_to_float32"),
    "cryptomatte/542cafa/manifest": ("string", b'{"Cube":"a8fce865","Sphere":"0b7ef2a1"}'),
}


def test_header_metadata_is_written_and_read_back(tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).random((3, 4, 4), dtype=np.float32)
    metadata = {
        **CRYPTO,
        "BlenderMultiChannel": ("string", b"Blender V2.55.1 and newer"),
        "xDensity": ("float", b"\0\0\x90\x42"),
        "a stamp note with a name longer than 31 bytes": ("string", b"kept"),
    }
    exr.write_layers(tmp_path / "m.exr", {"ViewLayer": {"Combined": ("RGBA", rgba)}}, metadata)
    assert exr.read_metadata(tmp_path / "m.exr") == metadata
    np.testing.assert_array_equal(exr.read_layers(tmp_path / "m.exr")["ViewLayer"]["Combined"], rgba)
    exr.write_layers(tmp_path / "plain.exr", {"ViewLayer": {"Combined": ("RGBA", rgba)}})
    assert exr.read_metadata(tmp_path / "plain.exr") == {}


def test_a_manifest_longer_than_the_first_read(tmp_path: Path) -> None:
    """A big scene's manifest (here 200 KB, past the first 64 KiB read) comes back whole."""
    manifest = "{" + ",".join(f'"object {i:05d}":"{i:08x}"' for i in range(8000)) + "}"
    assert len(manifest) > 3 * (1 << 16)
    metadata = {**CRYPTO, "cryptomatte/542cafa/manifest": ("string", manifest.encode())}
    exr.write_layers(tmp_path / "big.exr", {"ViewLayer": {"Combined": ("RGBA", np.zeros((2, 3, 4), np.float32))}}, metadata)
    assert exr.read_metadata(tmp_path / "big.exr") == metadata


def _header(attrs: list[tuple[str, str, bytes]]) -> bytes:
    attr = (name.encode() + b"\0" + kind.encode() + b"\0" + len(v).to_bytes(4, "little") + v for name, kind, v in attrs)
    return b"".join(attr) + b"\0"


def test_metadata_of_every_part_of_a_compressed_multi_part_file(tmp_path: Path) -> None:
    """As Blender 5.0 writes multilayer EXRs: one part per layer, ZIP-compressed, the Cryptomatte attributes in the
    first part's header and a colorInteropID in each (the first part's is kept); the layout's attributes are not
    metadata. Only the headers are read, so the compression does not matter."""
    part = [("channels", "chlist", b"\0"), ("compression", "compression", b"\3"), ("chunkCount", "int", b"\1\0\0\0")]
    first = [*part, ("name", "string", b"ViewLayer.Combined"), ("type", "string", b"scanlineimage")]
    first += [(k, kind, v) for k, (kind, v) in CRYPTO.items()] + [("colorInteropID", "string", b"lin_rec709_scene")]
    second = [*part, ("name", "string", b"ViewLayer.CryptoObject00"), ("colorInteropID", "string", b"data")]
    second += [("Note", "string", b"only here")]
    head = (20000630).to_bytes(4, "little") + (2 | 0x1000).to_bytes(4, "little")
    (tmp_path / "mp.exr").write_bytes(head + _header(first) + _header(second) + b"\0")
    assert exr.read_metadata(tmp_path / "mp.exr") == {
        **CRYPTO,
        "colorInteropID": ("string", b"lin_rec709_scene"),
        "Note": ("string", b"only here"),
    }
    (tmp_path / "cut.exr").write_bytes(head + _header(first)[:40])
    with pytest.raises(exr.ExrError, match="header"):
        exr.read_metadata(tmp_path / "cut.exr")


def test_bad_metadata_is_refused(tmp_path: Path) -> None:
    layers = {"ViewLayer": {"Combined": ("RGBA", np.zeros((2, 2, 4), np.float32))}}
    with pytest.raises(exr.ExrError, match="layout"):
        exr.write_layers(tmp_path / "x.exr", layers, {"dataWindow": ("box2i", bytes(16))})
    with pytest.raises(exr.ExrError, match="not a name"):
        exr.write_layers(tmp_path / "x.exr", layers, {"Note": ("string", "text, not bytes")})  # type: ignore[dict-item]
    with pytest.raises(exr.ExrError, match="cannot read"):
        exr.read_metadata(tmp_path / "missing.exr")
    (tmp_path / "y.exr").write_bytes(b"x" * 16)
    with pytest.raises(exr.ExrError, match="not an OpenEXR"):
        exr.read_metadata(tmp_path / "y.exr")
