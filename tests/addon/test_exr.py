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
