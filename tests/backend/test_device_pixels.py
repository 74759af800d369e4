"""Frames converted on the model's device: exact integer round trips, alpha carried, wire buffers never written."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.device_pixels import download_frame, upload_frame, upload_labels
from backend.errors import BackendError

RNG = np.random.default_rng(7)


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)  # as a frame decoded from a received ZeroMQ message is
    return a


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_integer_frames_round_trip_exactly_with_alpha(device, dtype):
    top = np.iinfo(dtype).max
    frame = _read_only(RNG.integers(0, top + 1, size=(5, 7, 4)).astype(dtype))
    rgb, alpha = upload_frame(frame, torch.device(device))
    assert rgb.shape == (3, 5, 7) and rgb.dtype == torch.float32 and rgb.device.type == device
    np.testing.assert_allclose(rgb.cpu().numpy(), frame[..., :3].transpose(2, 0, 1) / top, rtol=0, atol=1e-7)
    out = download_frame(rgb, alpha, dtype)
    assert out.dtype == np.dtype(dtype) and out.shape == (5, 7, 4)
    np.testing.assert_array_equal(out, frame)


def test_float_frames_are_clipped_and_converted(device):
    frame = _read_only(np.array([[[-0.5, 0.25, 2.0, 0.5]] * 16] * 16, dtype=np.float16))
    rgb, alpha = upload_frame(frame, torch.device(device))
    assert rgb[:, 0, 0].tolist() == [0.0, 0.25, 1.0]
    half = download_frame(rgb, alpha, "float16")
    np.testing.assert_array_equal(half[0, 0], np.array([0.0, 0.25, 1.0, 0.5], np.float16))
    as_u8 = download_frame(rgb, alpha, "uint8")  # colour and alpha by the same rule (1.0 <-> 255)
    assert as_u8[0, 0].tolist() == [0, 64, 255, 128]
    assert download_frame(rgb, None, "float32").shape == (16, 16, 3)
    huge, _ = upload_frame(np.full((16, 16, 3), 3e38, np.float32), torch.device(device))  # finite, though its sum is not
    assert float(huge.min()) == 1.0


def test_the_wire_buffer_is_never_written(device):
    frame = _read_only(np.full((16, 16, 3), 3.0, np.float32))
    rgb, _ = upload_frame(frame, torch.device(device))
    rgb.zero_()
    assert float(frame.min()) == 3.0


def test_bad_frames_say_what_is_wrong():
    with pytest.raises(BackendError, match="NaN or infinite"):
        upload_frame(np.full((16, 16, 3), np.nan, np.float32), torch.device("cpu"))
    with pytest.raises(BackendError, match=r"\(H, W, 3\|4\)"):
        upload_frame(np.zeros((16, 16, 3), np.int64), torch.device("cpu"))
    rgb, alpha = upload_frame(np.dstack([np.zeros((16, 16, 3)), np.full((16, 16), np.inf)]).astype(np.float32),
                              torch.device("cpu"))  # fmt: skip
    with pytest.raises(BackendError, match="alpha holds NaN"):
        download_frame(rgb, alpha, "uint8")


def test_label_maps_keep_every_uint16_value(device):
    labels = _read_only(np.array([[0, 1, 255], [256, 40000, 65535]], np.uint16))
    got = upload_labels(labels, torch.device(device))
    assert got.dtype == torch.int32 and got.cpu().tolist() == labels.tolist()
    assert upload_labels(labels.astype(np.uint8), torch.device(device)).cpu().tolist() == labels.astype(np.uint8).tolist()
    signed = _read_only(np.array([[-1, 0], [3, 70000]], np.int32))  # int32 maps may hold "no region" values
    assert upload_labels(signed, torch.device(device)).cpu().tolist() == [[-1, 0], [3, 70000]]
