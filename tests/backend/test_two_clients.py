"""Two clients at once on one backend, interleaving their frames and styles (pipelined, from two threads)."""

from __future__ import annotations

import threading

import numpy as np
import torch

from adain_wire.client import Client
from adain_wire.protocol import RegionSpec, StylizeReply


def chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))


def test_two_clients_interleave_frames_and_styles(serve, model):
    server = serve()
    rng = np.random.default_rng(21)
    styles = [rng.random((32, 32, 3), dtype=np.float32) for _ in range(2)]
    frames = {name: [rng.random((32, 36, 3), dtype=np.float32) for _ in range(6)] for name in ("a", "b")}
    results: dict[str, list[StylizeReply]] = {}
    errors: list[BaseException] = []
    with Client(server.endpoint) as a, Client(server.endpoint) as b:
        own = {"a": a.put_style(styles[0], size=0), "b": b.put_style(styles[1], size=0)}
        start = threading.Barrier(2)

        def run(name: str, client: Client) -> None:
            try:
                start.wait(10)
                mine, theirs = own[name], own["b" if name == "a" else "a"]
                # even frames: my style; odd frames: a mix of mine and the other client's (ids are content hashes)
                pendings = [client.submit(f, mine if i % 2 == 0 else RegionSpec.mix({mine: 1.0, theirs: 1.0}, 0.7))
                            for i, f in enumerate(frames[name])]  # fmt: skip
                results[name] = [p.result(60) for p in pendings]
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(n, c)) for n, c in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors
    stats = [model.encode_style(chw(s)) for s in styles]
    for name, mine in (("a", 0), ("b", 1)):
        assert len(results[name]) == 6
        for i, (f, r) in enumerate(zip(frames[name], results[name], strict=True)):
            if i % 2 == 0:
                want = model.stylize(chw(f), stats[mine])
            else:
                want = model.stylize(chw(f), [stats[mine], stats[1 - mine]], 0.7, weights=[1.0, 1.0])
            assert r.combined is not None
            np.testing.assert_allclose(r.combined, want.numpy().transpose(1, 2, 0), atol=1e-5)
