"""Every op over real sockets (inproc, ipc, tcp loopback) against the real model, compared with direct calls."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from wire import Wire, chw, wait_running

from adain import Region
from adain.images import load_image
from adain_wire.protocol import (
    Cancel,
    CancelReply,
    ErrorCode,
    ErrorReply,
    Hello,
    HelloReply,
    Passes,
    RegionSpec,
    Release,
    ReleaseReply,
    Shutdown,
    ShutdownReply,
    StylePut,
    StylePutReply,
    StyleRef,
    Stylize,
    StylizeReply,
    style_id,
)

RNG = np.random.default_rng(7)
FRAME = RNG.random((40, 48, 3), dtype=np.float32)
STYLE = RNG.random((36, 44, 3), dtype=np.float32)


def region(sid: str, alpha: float = 1.0, *more: tuple[str, float]) -> RegionSpec:
    return RegionSpec((StyleRef(sid), *(StyleRef(s, w) for s, w in more)), alpha)


@pytest.fixture(params=["inproc", "ipc", "tcp"])
def wire(request, serve, zctx, tmp_path):
    bind = {"inproc": "inproc://backend-test", "ipc": f"ipc://{tmp_path}/backend.sock", "tcp": "tcp://127.0.0.1:*"}
    server = serve(bind[request.param], context=zctx)
    w = Wire(zctx, server.endpoint)
    yield w
    w.close()


@pytest.fixture
def tcp(serve, zctx):
    server = serve()
    w = Wire(zctx, server.endpoint)
    yield w
    w.close()


def put_array(w: Wire, image: np.ndarray, rid: str = "put") -> str:
    reply = w.ask(StylePut(rid, image=image))
    assert isinstance(reply, StylePutReply), reply
    return reply.style


def test_hello_reports_protocol_instance_device_model_and_limits(wire):
    reply = wire.ask(Hello("h1", client="pytest"))
    assert isinstance(reply, HelloReply) and reply.id == "h1"
    assert reply.protocol == 1 and reply.server.startswith("adain-backend")
    assert reply.device.startswith("cpu") and reply.precision == "fp32"
    assert reply.model.encoder == "vgg19-normalised-adain-v1"
    assert reply.limits.max_pixels == 4096 * 4096 and reply.limits.max_message_bytes > 4096 * 4096 * 16
    assert "stylize" in reply.ops and "srgb" in reply.colourspaces
    assert wire.ask(Hello("h2")).instance == reply.instance  # same process, same instance


def test_stylize_one_style_equals_the_library(wire, model):
    sid = put_array(wire, STYLE)
    reply = wire.ask(Stylize("s1", FRAME, (region(sid, 0.7),)))
    assert isinstance(reply, StylizeReply) and reply.id == "s1"
    assert reply.combined is not None and reply.combined.shape == (40, 48, 3) and reply.combined.dtype == np.float32
    expected = model.stylize(torch.from_numpy(chw(FRAME)), model.encode_style(torch.from_numpy(chw(STYLE))), 0.7)
    np.testing.assert_allclose(chw(reply.combined), expected.numpy(), atol=1e-5)
    assert reply.passes == () and reply.timing.compute_ms > 0


def test_style_put_ids_are_content_hashes_and_cached(tcp):
    first = tcp.ask(StylePut("a", image=STYLE))
    again = tcp.ask(StylePut("b", image=STYLE.copy()))
    other = tcp.ask(StylePut("c", image=STYLE[::-1].copy()))
    assert isinstance(first, StylePutReply) and isinstance(again, StylePutReply) and isinstance(other, StylePutReply)
    assert first.style == again.style == style_id(StylePut("x", image=STYLE)) != other.style
    assert (first.cached, again.cached) == (False, True)
    assert (first.width, first.height) == (44, 36)


def test_style_put_encoded_file_matches_load_image(tcp, model, samples):
    path = samples / "style_wesnoth_trow_great_tree.jpg"
    reply = tcp.ask(StylePut("p", encoded=path.read_bytes(), size=48))
    assert isinstance(reply, StylePutReply) and min(reply.width, reply.height) == 48
    out = tcp.ask(Stylize("s", FRAME, (region(reply.style),)))
    assert isinstance(out, StylizeReply) and out.combined is not None
    expected = model.stylize(torch.from_numpy(chw(FRAME)), model.encode_style(load_image(path, 48)))
    np.testing.assert_allclose(chw(out.combined), expected.numpy(), atol=1e-5)


def test_style_put_png_with_alpha_and_resized_array(tcp):
    rgba = (RNG.random((30, 40, 4)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    png = tcp.ask(StylePut("png", encoded=buf.getvalue(), size=20))
    arr = tcp.ask(StylePut("arr", image=rgba, size=20))
    assert isinstance(png, StylePutReply) and (png.width, png.height) == (27, 20)
    assert isinstance(arr, StylePutReply) and (arr.width, arr.height) == (27, 20) and arr.style != png.style


def test_regions_label_map_passes_and_alpha_channel(tcp, model):
    s0, s1 = put_array(tcp, STYLE, "p0"), put_array(tcp, STYLE[:, ::-1].copy(), "p1")
    rgba = np.concatenate([FRAME, RNG.random((40, 48, 1), dtype=np.float32)], axis=2)
    labels = np.zeros((40, 48), np.uint16)
    labels[:, 24:] = 1
    labels[:8] = 9  # outside [0, R): keeps the content
    regions = (region(s0, 0.9), region(s1, 0.5, (s0, 3.0)))
    reply = tcp.ask(Stylize("r", rgba, regions, masks=labels, passes=Passes(combined=True, regions=True)))
    assert isinstance(reply, StylizeReply) and reply.combined is not None and len(reply.passes) == 2
    st0 = model.encode_style(torch.from_numpy(chw(STYLE)))
    st1 = model.encode_style(torch.from_numpy(chw(STYLE[:, ::-1].copy())))
    both = [Region([st0], None, 0.9), Region([st1, st0], [1.0, 3.0], 0.5)]
    labels64 = torch.from_numpy(labels.astype(np.int64))
    expected = model.stylize_passes(torch.from_numpy(chw(FRAME)), regions=both, masks=labels64)
    np.testing.assert_allclose(chw(reply.combined)[:3], expected.combined.numpy(), atol=1e-5)
    for got, want in zip(reply.passes, expected.passes, strict=True):
        np.testing.assert_allclose(chw(got)[:3], want.numpy(), atol=1e-5)
    for out in (reply.combined, *reply.passes):
        assert out.shape == (40, 48, 4)
        np.testing.assert_array_equal(out[..., 3], rgba[..., 3])  # alpha passed through bit for bit


def test_soft_masks_only_passes_and_float16_output(tcp, model):
    sid = put_array(tcp, STYLE)
    soft = np.stack([np.linspace(0, 1, 48, dtype=np.float32)[None].repeat(40, 0)] * 2)
    soft[1] = 1 - soft[1]
    regions = (region(sid, 1.0), region(sid, 0.3))
    reply = tcp.ask(Stylize("s", FRAME.astype(np.float16), regions, masks=soft.astype(np.float16),
                            passes=Passes(combined=False, regions=True), output_dtype="float16"))  # fmt: skip
    assert isinstance(reply, StylizeReply) and reply.combined is None and len(reply.passes) == 2
    assert all(p.dtype == np.float16 and p.shape == (40, 48, 3) for p in reply.passes)
    stats = model.encode_style(torch.from_numpy(chw(STYLE)))
    content = torch.from_numpy(chw(FRAME.astype(np.float16)))
    np.testing.assert_allclose(chw(reply.passes[1]), model.stylize(content, stats, 0.3).numpy(), atol=2e-3)


def test_tiling_and_colour_preservation_equal_the_library(tcp, model):
    sid = put_array(tcp, STYLE)
    big = RNG.random((80, 72, 3), dtype=np.float32)
    reply = tcp.ask(Stylize("t", big, (region(sid, 0.8),), preserve_color="coral", tile=64))
    assert isinstance(reply, StylizeReply) and reply.combined is not None
    stats = model.encode_style(torch.from_numpy(chw(STYLE)))
    expected = model.stylize(torch.from_numpy(chw(big)), stats, 0.8, preserve_color="coral", tile=64)
    np.testing.assert_allclose(chw(reply.combined), expected.numpy(), atol=1e-5)
    plain = model.stylize(torch.from_numpy(chw(big)), stats, 0.8, tile=64)
    assert np.abs(chw(reply.combined) - plain.numpy()).max() > 0  # coral reached the model (fp32 CPU is deterministic)


def test_uint8_frame_comes_back_uint8_with_its_alpha(tcp, model):
    sid = put_array(tcp, STYLE)
    rgba8 = (RNG.random((32, 32, 4)) * 255).astype(np.uint8)
    reply = tcp.ask(Stylize("u", rgba8, (region(sid),)))
    assert isinstance(reply, StylizeReply) and reply.combined is not None and reply.combined.dtype == np.uint8
    np.testing.assert_array_equal(reply.combined[..., 3], rgba8[..., 3])
    content = torch.from_numpy(chw(rgba8[..., :3].astype(np.float32) / 255))
    expected = model.stylize(content, model.encode_style(torch.from_numpy(chw(STYLE)))).numpy().transpose(1, 2, 0)
    assert np.abs(reply.combined[..., :3].astype(int) - np.rint(expected * 255)).max() <= 1
    as_float = tcp.ask(Stylize("f", rgba8, (region(sid),), output_dtype="float32"))
    assert isinstance(as_float, StylizeReply) and as_float.combined is not None
    np.testing.assert_allclose(as_float.combined[..., 3], rgba8[..., 3] / 255.0, atol=1e-7)


def test_cancel_a_queued_request(tcp):
    sid = put_array(tcp, STYLE)
    big = RNG.random((96, 96, 3), dtype=np.float32)
    for i in range(3):
        tcp.send(Stylize(f"busy{i}", big, (region(sid),), passes=Passes(True, True)))
    tcp.send(Stylize("victim", FRAME, (region(sid),)))
    tcp.send(Cancel("c", "victim"))
    replies = [tcp.recv() for _ in range(5)]
    order = [r.id for r in replies]
    victim = replies[order.index("victim")]
    cancel = replies[order.index("c")]
    assert isinstance(victim, ErrorReply) and victim.code == ErrorCode.CANCELLED
    assert isinstance(cancel, CancelReply) and cancel.state == "queued" and cancel.target == "victim"
    assert order.index("victim") < order.index("c")  # the cancelled reply comes first
    assert all(isinstance(r, StylizeReply) for r in replies if r.id.startswith("busy"))
    assert isinstance(tcp.ask(Cancel("c2", "victim")), CancelReply)  # answered already: unknown
    assert tcp.ask(Cancel("c3", "never-sent")).state == "unknown"  # type: ignore[union-attr]


def test_cancel_a_running_request(serve, zctx):
    server = serve()
    tcp = Wire(zctx, server.endpoint)
    sid = put_array(tcp, STYLE)
    big = RNG.random((256, 256, 3), dtype=np.float32)
    regions = (region(sid), region(sid, 0.5))
    tcp.send(Stylize("long", big, regions, masks=np.zeros((256, 256), np.uint8), passes=Passes(True, True)))
    wait_running(server, "long")  # three decodes of 256x256 follow: the cancel comes well before the end
    tcp.send(Cancel("c", "long"))
    first, second = tcp.recv(), tcp.recv()
    assert isinstance(first, CancelReply) and first.state == "running"
    assert isinstance(second, ErrorReply) and second.id == "long" and second.code == ErrorCode.CANCELLED
    tcp.close()


def test_a_cancelled_running_request_stops_the_networks_within_a_layer(serve, zctx, model):
    """The worker does not finish a cancelled frame: the networks stop at their next convolution, so the next
    request starts at once (on a CPU a 4K frame takes a minute)."""
    assert model.precision == "fp32"  # the networks that run are model.encoder and model.decoder themselves
    started: list[str] = []
    convs = [m for net in (model.encoder, model.decoder) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    handles = [m.register_forward_pre_hook(lambda m, a: started.append("conv")) for m in convs]  # after the stop hook
    try:
        server = serve()
        tcp = Wire(zctx, server.endpoint)
        sid = put_array(tcp, STYLE)
        started.clear()
        big = RNG.random((512, 512, 3), dtype=np.float32)  # one encode + one decode: 19 convolutions, seconds on a CPU
        tcp.send(Stylize("long", big, (region(sid),)))
        wait_running(server, "long")
        tcp.send(Cancel("c", "long"))
        first, second = tcp.recv(), tcp.recv()
        assert isinstance(first, CancelReply) and first.state == "running"
        assert isinstance(second, ErrorReply) and second.code == ErrorCode.CANCELLED
        assert len(started) < 10, f"{len(started)} of 19 convolutions ran after the cancel: the encoder did not stop"
        ran = len(started)
        assert isinstance(tcp.ask(Stylize("next", FRAME, (region(sid),))), StylizeReply)  # the worker is free
        assert len(started) == ran + 19
        tcp.close()
    finally:
        for h in handles:
            h.remove()


def test_release_frees_and_forgets_styles(tcp):
    sid = put_array(tcp, STYLE)
    kept = tcp.ask(Release("r1"))
    assert isinstance(kept, ReleaseReply) and kept.styles_dropped == 0 and kept.device_allocated == 0
    assert isinstance(tcp.ask(Stylize("ok", FRAME, (region(sid),))), StylizeReply)
    dropped = tcp.ask(Release("r2", styles=True))
    assert isinstance(dropped, ReleaseReply) and dropped.styles_dropped == 1
    gone = tcp.ask(Stylize("gone", FRAME, (region(sid),)))
    assert isinstance(gone, ErrorReply) and gone.code == ErrorCode.UNKNOWN_STYLE and gone.style == sid


def test_shutdown_from_loopback_finishes_the_running_request_and_refuses_the_queued(serve, zctx):
    server = serve()
    w = Wire(zctx, server.endpoint)
    sid = put_array(w, STYLE)
    big = RNG.random((128, 128, 3), dtype=np.float32)
    w.send(Stylize("running", big, (region(sid),), passes=Passes(True, True)))
    wait_running(server, "running")
    w.send(Stylize("queued", big, (region(sid),)))
    w.send(Shutdown("bye"))
    replies = {r.id: r for r in (w.recv(), w.recv(), w.recv())}
    assert isinstance(replies["bye"], ShutdownReply)
    assert isinstance(replies["running"], StylizeReply)
    queued = replies["queued"]
    assert isinstance(queued, ErrorReply) and queued.code == ErrorCode.SHUTTING_DOWN
    assert server._thread is not None
    server._thread.join(10)
    assert not server._thread.is_alive()
    w.send(Hello("anyone"))
    assert w.silent(0.5)
    w.close()


def test_duplicate_in_flight_id_is_refused(tcp):
    sid = put_array(tcp, STYLE)
    big = RNG.random((96, 96, 3), dtype=np.float32)
    tcp.send(Stylize("same", big, (region(sid),)))
    tcp.send(Stylize("same", FRAME, (region(sid),)))
    first, second = tcp.recv(), tcp.recv()
    assert isinstance(first, ErrorReply) and first.code == ErrorCode.BAD_REQUEST and "in flight" in first.message
    assert isinstance(second, StylizeReply) and second.combined is not None and second.combined.shape == (96, 96, 3)


def test_busy_when_the_queue_is_full(serve, zctx):
    server = serve(max_queue=1)
    w = Wire(zctx, server.endpoint)
    sid = put_array(w, STYLE)
    big = RNG.random((96, 96, 3), dtype=np.float32)
    for i in range(4):
        w.send(Stylize(f"f{i}", big, (region(sid),)))
    replies = [w.recv() for _ in range(4)]
    busy = [r for r in replies if isinstance(r, ErrorReply)]
    assert busy and all(r.code == ErrorCode.BUSY and "--max-queue" in r.message for r in busy)
    assert sum(isinstance(r, StylizeReply) for r in replies) >= 1
    assert isinstance(w.ask(Hello("still")), HelloReply)
    w.close()
