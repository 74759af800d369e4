"""Reliability figures of the backend and the client, with real processes, sockets and signals (docs/reliability.md).

    python scripts/soak.py                                   # everything, the defaults below (~3 minutes here)
    python scripts/soak.py --only malformed --malformed 20000
    python scripts/soak.py --only pipelined --clients 8 --frames 20 --size 64
    python scripts/soak.py --json out/soak.json --backend-dir /path/to/an/older/checkout   # measure another version

Four parts, each printing one summary line:

- ``malformed``: N requests mutated from valid ones (missing, unknown and wrongly typed fields, invalid UTF-8,
  truncated or random headers, missing or extra buffers, wrong sizes), one DEALER, each reply awaited (5 s at
  most). Counted: backend crashes, requests with no reply, unattributed replies (the header was a map with a valid
  id, a string of 1 to 128 characters, but the reply's id is not it) and the backend's resident memory before
  and after.
- ``pipelined``: K clients (``adain_wire.client.Client``), each submitting F frames at once, on threads. Counted:
  frames lost, duplicated and crossed (checked exactly against a ``--identity`` backend, which sends each frame
  back unchanged; the model run checks that every reply is nearest to its own frame) and ``busy`` replies.
- ``kills``: a local backend started by ``BackendManager`` is SIGKILLed during a sequence of frames sent the way
  the add-on sends them (``addon.frames.stylize_reconnecting``), K times. Counted: kills survived, frames lost.
- ``owner``: a backend started with ``--owner-pid`` of a stand-in owner process, which is then SIGKILLed; the time
  until the backend has exited (R times).

Ctrl-C stops and prints what was measured. Every process started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adain_wire.client import Client, ClientError  # noqa: E402
from adain_wire.manager import BackendManager, BackendSettings  # noqa: E402
from adain_wire.protocol import RegionSpec, StyleRef  # noqa: E402

PARTS = ("malformed", "pipelined", "kills", "owner")


# ------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def backend(args: argparse.Namespace, *extra: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A backend subprocess on a free port, up and answering; killed on the way out."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cmd = [args.python, "-m", "backend", "--bind", endpoint, "--device", "cpu", "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, cwd=args.backend_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the backend did not start: {' '.join(cmd)}")
            try:
                with Client(endpoint, timeout=1.0):
                    break
            except ClientError:
                time.sleep(0.2)
        yield proc, endpoint
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# ------------------------------------------------------------------------------ malformed
FRAME = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
MARK = "\u0001MARK\u0001"  # a str placeholder whose packed bytes are replaced by invalid UTF-8


def valid(rng: random.Random, sid: str, n: int) -> tuple[dict[str, Any], list[bytes]]:
    rid = f"req-{n}"
    kind = rng.choice(("hello", "put", "stylize", "cancel", "release"))
    if kind == "hello":
        return {"v": 1, "op": "hello", "id": rid, "client": "soak"}, []
    if kind == "put":
        return {"v": 1, "op": "style.put", "id": rid, "image": {"dtype": "float32", "shape": [16, 16, 3], "frame": 1},
                "colourspace": "srgb", "size": 0}, [FRAME.tobytes()]  # fmt: skip
    if kind == "stylize":
        regions = [{"styles": [{"id": sid, "weight": 1.0}], "alpha": 1.0}]
        return {"v": 1, "op": "stylize", "id": rid, "image": {"dtype": "float32", "shape": [16, 16, 3], "frame": 1},
                "colourspace": "srgb", "regions": regions}, [FRAME.tobytes()]  # fmt: skip
    if kind == "cancel":
        return {"v": 1, "op": "cancel", "id": rid, "target": "nothing"}, []
    return {"v": 1, "op": "release", "id": rid, "styles": False}, []


def junk(rng: random.Random) -> Any:
    return rng.choice((None, True, -1, 2**40, 1.5, float("nan"), "", "x" * rng.randint(1, 300), b"\x00\xff", [], [1, "a"],
                       {}, {"frame": 9}, {"dtype": "float64", "shape": [1], "frame": 1}, MARK))  # fmt: skip


def mutate(rng: random.Random, fields: dict[str, Any], buffers: list[bytes]) -> tuple[list[bytes], str | None]:
    """A malformed message from a valid one, and its id if its header stays a map with a readable (UTF-8) id."""
    fields, buffers = dict(fields), list(buffers)
    how = rng.randrange(9)
    keys = [k for k in fields if k != "id"]
    if how == 0 and keys:
        del fields[rng.choice(keys)]
    elif how == 1:
        fields[rng.choice(keys)] = junk(rng)
    elif how == 2:
        fields[f"unknown_{rng.randint(0, 9)}"] = junk(rng)
    elif how == 3:
        fields[rng.choice(keys)] = MARK  # invalid UTF-8 in some field other than the id
    elif how == 4:
        buffers = [*buffers, b"\x00" * rng.randint(0, 64)] if rng.random() < 0.5 else buffers[:-1]
    elif how == 5 and buffers:
        buffers = [buffers[0][: rng.randint(0, len(buffers[0]) - 1)]]
    elif how == 6:
        fields["id"] = junk(rng)
    header = msgpack.packb(fields, use_bin_type=True)
    packed_mark = msgpack.packb(MARK)
    header = header.replace(packed_mark, packed_mark[:1] + b"\xff" * (len(packed_mark) - 1))
    rid = fields.get("id")
    readable = rid if isinstance(rid, str) and rid != MARK and 1 <= len(rid) <= 128 else None  # an id as the spec has it
    if how == 7:  # a truncated header
        header, readable = header[: rng.randint(0, max(0, len(header) - 1))], None
    elif how == 8:  # random bytes
        header, readable = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))), None
    return [header, *buffers], readable


def part_malformed(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with backend(args) as (proc, endpoint):
        sock: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        put = {"v": 1, "op": "style.put", "id": "put", "image": {"dtype": "float32", "shape": [16, 16, 3], "frame": 1},
               "colourspace": "srgb", "size": 0}  # fmt: skip
        sock.send_multipart([msgpack.packb(put), FRAME.tobytes()])
        sid = msgpack.unpackb(sock.recv_multipart()[0])["style"]
        before = rss_mb(proc.pid)
        trace: list[float] = []  # resident MB after every 10,000 requests
        no_reply = unattributed = attributable = 0
        t0 = time.monotonic()
        for n in range(args.malformed):
            fields, buffers = valid(rng, sid, n)
            frames, readable = mutate(rng, fields, buffers)
            sock.send_multipart(frames)
            if not sock.poll(5000):
                no_reply += 1
                if proc.poll() is not None:
                    break
                continue
            reply = msgpack.unpackb(sock.recv_multipart()[0], raw=False)
            if readable is not None:
                attributable += 1
                unattributed += reply.get("id") != readable
            if n % 1000 == 999:
                print(f"  malformed {n + 1}/{args.malformed}", file=sys.stderr, flush=True)
            if n % 10000 == 9999:  # the backend's memory along the run: does it level off?
                trace.append(round(rss_mb(proc.pid), 1))
        alive = proc.poll() is None
        after = rss_mb(proc.pid) if alive else float("nan")
        sock.close(0)
    return {"requests": args.malformed, "crashes": int(not alive), "no_reply": no_reply, "attributable": attributable,
            "unattributed": unattributed, "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
            "rss_every_10k_mb": trace, "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip


# ------------------------------------------------------------------------------ pipelined
def smooth_frames(seed: int, n: int, size: int) -> list[np.ndarray]:
    """Low-frequency random frames: a decoder keeps them recognisable, so a crossed reply shows."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.random((4, 4, 3), dtype=np.float32)
        out.append(np.ascontiguousarray(np.kron(coarse, np.ones((size // 4, size // 4, 1), np.float32))))
    return out


STYLE = np.random.default_rng(7).random((32, 32, 3), dtype=np.float32)
_model: list[Any] = []


def _stylized(frame: np.ndarray) -> np.ndarray:
    """The shipped model's answer for ``frame`` with STYLE, computed in this process (CPU, fp32)."""
    import torch

    from adain import StyleTransfer

    if not _model:
        model = StyleTransfer.load_default(device="cpu", precision="fp32")
        _model.extend((model, model.encode_style(torch.from_numpy(np.ascontiguousarray(STYLE.transpose(2, 0, 1))))))
    model, stats = _model
    out = model.stylize(torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))), stats)
    return np.asarray(out.numpy().transpose(1, 2, 0))


def run_pipelined(args: argparse.Namespace, endpoint: str, exact: bool) -> dict[str, Any]:
    clients = [Client(endpoint, timeout=30, give_up=300, window=args.window) for _ in range(args.clients)]
    sent = {k: smooth_frames(1000 + k, args.frames, args.size) for k in range(args.clients)}
    got: dict[int, list[np.ndarray | None]] = {}
    errors: list[str] = []
    try:
        for c in clients:
            c.connect()
        sid = clients[0].put_style(STYLE, size=0)
        barrier = threading.Barrier(len(clients))

        def run(k: int) -> None:
            barrier.wait(60)
            pendings = [clients[k].submit(f, RegionSpec((StyleRef(sid),))) for f in sent[k]]
            outs: list[np.ndarray | None] = []
            for p in pendings:
                e = p.exception(600)
                outs.append(None if e else np.asarray(p.result().combined)[..., :3])
                if e:
                    errors.append(e.message)
            got[k] = outs

        t0 = time.monotonic()
        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(900)
        seconds = time.monotonic() - t0
        busy = sum(c.busy_replies for c in clients)
        stale = sum(c.stale_replies for c in clients)
    finally:
        for c in clients:
            c.close()
    lost = sum(o is None for outs in got.values() for o in outs) + sum(args.frames for k in sent if k not in got)
    # what each reply must be: the frame itself (identity), or the model's output computed here
    want = sent if exact else {k: [_stylized(f) for f in fs] for k, fs in sent.items()}
    everything = [(k, i, w) for k, ws in want.items() for i, w in enumerate(ws)]
    crossed = 0
    for k, outs in got.items():
        for i, out in enumerate(outs):
            if out is not None:  # crossed: the reply is nearer to another frame's answer than to its own
                errs = [float(np.mean((out - w) ** 2)) for _, _, w in everything]
                crossed += everything[int(np.argmin(errs))][:2] != (k, i)
    return {"clients": args.clients, "frames_each": args.frames, "size": args.size, "lost": lost, "crossed": crossed,
            "duplicated": stale, "busy": busy, "busy_per_frame": round(busy / (args.clients * args.frames), 3),
            "errors": sorted(set(errors))[:3], "seconds": round(seconds, 1)}  # fmt: skip


def part_pipelined(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for mode, extra in (("identity", ("--identity",)), ("model", ())):
        with backend(args, *extra) as (_, endpoint):
            out[mode] = run_pipelined(args, endpoint, exact=mode == "identity")
    return out


# ------------------------------------------------------------------------------ kills
def part_kills(args: argparse.Namespace) -> dict[str, Any]:
    from addon.frames import FrameError, FrameJob, SlotJob, StyleIds, StyleSource, stylize_reconnecting

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    command = (args.python, "-m", "backend", "--device", "cpu", "--log-level", "warning")
    manager = BackendManager(BackendSettings(endpoint=endpoint, command=command, start_timeout=180, give_up=120))
    style = StyleSource("soak-style", pixels=smooth_frames(9, 1, 64)[0])
    frames = smooth_frames(5, args.kill_frames, args.size)
    known: list[tuple[Client, StyleIds]] = []

    def ids_for(client: Client) -> StyleIds:  # the style ids a connection holds (as the add-on's SESSION.ids_for)
        if not known or known[-1][0] is not client:
            known.append((client, StyleIds()))
        return known[-1][1]

    lost = done = 0
    killed_pids: list[int] = []
    killed_at: list[int] = []
    stop = threading.Event()

    def killer() -> None:  # SIGKILL the backend at random moments while frames are in flight
        rng = random.Random(args.seed)
        while not stop.is_set() and len(killed_pids) < args.kills:
            time.sleep(rng.uniform(1.0, 4.0))
            proc = manager.process
            if proc is not None and proc.poll() is None and manager.describe() != "not connected":
                os.kill(proc.pid, signal.SIGKILL)
                killed_at.append(done)  # the frame in flight (or the next one) must come back through a restart
                killed_pids.append(proc.pid)

    t0 = time.monotonic()
    try:
        manager.client()
        deadline = time.monotonic() + 60 + 30 * args.kills  # a kill comes within 4 s of a connection; restarts take s
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        while len(killed_pids) < args.kills or done < len(frames) or (bool(killed_at) and done <= killed_at[-1]):
            job = FrameJob(frames[done % len(frames)], (SlotJob("all", ((style, 1.0),)),))
            try:
                stylize_reconnecting(manager, ids_for, job, style_size=64)
            except FrameError as e:
                lost += 1
                print(f"  frame lost: {e}", file=sys.stderr)
            done += 1
            if time.monotonic() > deadline:  # a bound on time, not on frames: fast frames must still meet every kill
                print(f"  gave up waiting for kills after {done} frames", file=sys.stderr)
                break
    finally:
        stop.set()
        manager.stop(timeout=5)
    return {"kills": len(killed_pids), "survived": max(0, len(killed_pids) - lost), "frames": done, "lost": lost,
            "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip


# ------------------------------------------------------------------------------ owner
def part_owner(args: argparse.Namespace) -> dict[str, Any]:
    times: list[float] = []
    for _ in range(args.owner_kills):
        owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        try:
            with backend(args, "--identity", "--owner-pid", str(owner.pid)) as (proc, _):
                owner.kill()
                owner.wait(5)
                t0 = time.monotonic()
                try:
                    proc.wait(30)
                    times.append(time.monotonic() - t0)
                except subprocess.TimeoutExpired:
                    times.append(float("inf"))
        finally:
            if owner.poll() is None:
                owner.kill()
    return {"owner_kills": len(times), "exit_s_max": round(max(times), 2), "exit_s_mean": round(sum(times) / len(times), 2)}


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--malformed", type=int, default=10_000, help="malformed requests to send")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--frames", type=int, default=20, help="frames each client pipelines")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--window", type=int, default=4, help="each client's own pipelining window (the Client default)")
    p.add_argument("--kills", type=int, default=3, help="backend SIGKILLs during the frame sequence")
    p.add_argument("--kill-frames", type=int, default=12, help="frames in that sequence (it goes on until every kill)")
    p.add_argument("--owner-kills", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--python", default=sys.executable, help="the Python that runs the backend")
    p.add_argument("--backend-dir", default=str(REPO), help="the checkout whose backend runs (another version: its figures)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    logging.getLogger("adain_wire.client").setLevel(logging.ERROR)  # (probing a backend that is starting is noisy)
    parts: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "malformed": part_malformed, "pipelined": part_pipelined, "kills": part_kills, "owner": part_owner}  # fmt: skip
    results: dict[str, Any] = {}
    try:
        for name in args.only:
            print(f"== {name}", file=sys.stderr, flush=True)
            results[name] = parts[name](args)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: the figures so far", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
