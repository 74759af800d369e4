"""``BackgroundTask``: a frame stylized on a background thread (what the Restyle operator polls from Blender's UI),
against a real backend on tcp loopback; cancelling it cancels the backend request."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from addon.background_task import BackgroundTask
from addon.frames import FrameCancelledError, FrameJob, FrameResult, SlotJob, StyleIds, StyleSource, stylize_frame

RNG = np.random.default_rng(5)
STYLE = StyleSource("s", pixels=RNG.random((40, 48, 3), dtype=np.float32))


def job(h: int, w: int) -> FrameJob:
    frame = np.random.default_rng(h * w).random((h, w, 3), dtype=np.float32)
    return FrameJob(frame, (SlotJob("S", ((STYLE, 1.0),)),), wire="float32")


def test_a_task_gives_what_the_synchronous_call_gives(real):
    j = job(48, 64)
    ids = StyleIds()
    task = BackgroundTask[FrameResult](lambda t: stylize_frame(real, ids, j, style_size=64, cancelled=t.cancelled))
    assert task.start().wait(60)
    threaded = task.result()
    direct = stylize_frame(real, ids, j, style_size=64)
    np.testing.assert_allclose(threaded.combined, direct.combined, atol=1e-6)
    assert np.abs(threaded.combined - j.image).mean() > 0.02  # stylized, not the frame handed back


def test_cancel_stops_the_backend_request_and_the_client_stays_usable(real):
    ids = StyleIds()
    stylize_frame(real, ids, job(32, 32), style_size=64)  # style put and the model warm
    big = job(768, 1024)  # seconds on a CPU: cancelled well before it is done
    waiting = threading.Event()  # set once the request is sent and the task waits for its reply

    def work(task: BackgroundTask[FrameResult]) -> FrameResult:
        def cancelled() -> bool:  # stylize_frame polls this while it waits for the reply
            waiting.set()
            return task.cancelled()

        return stylize_frame(real, ids, big, style_size=64, cancelled=cancelled)

    task: BackgroundTask[FrameResult] = BackgroundTask(work)
    task.start()
    assert waiting.wait(30), "the task never got to wait for the backend"
    assert not task.done()
    t0 = time.perf_counter()
    task.cancel()
    assert task.wait(5), "the task must end soon after cancel()"
    assert time.perf_counter() - t0 < 5
    with pytest.raises(FrameCancelledError, match="cancelled"):
        task.result()
    small = job(40, 40)  # the next request on the same client works
    out = stylize_frame(real, ids, small, style_size=64)
    assert out.combined.shape == (40, 40, 3)


def test_the_work_s_error_is_raised_by_result_on_the_polling_thread():
    def work(task: BackgroundTask[int]) -> int:
        task.progress = "half way"
        raise ValueError("bad frame")

    task: BackgroundTask[int] = BackgroundTask(work).start()
    assert task.wait(5)
    assert task.progress == "half way"
    with pytest.raises(ValueError, match="bad frame"):
        task.result()


def test_result_before_the_end_is_refused():
    gate = threading.Event()
    task: BackgroundTask[int] = BackgroundTask(lambda t: 1 if gate.wait(5) else 0).start()
    with pytest.raises(RuntimeError, match="still running"):
        task.result()
    gate.set()
    assert task.wait(5) and task.result() == 1
