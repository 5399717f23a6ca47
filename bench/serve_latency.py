"""Latency of ``ript serve``: network and serialisation vs model time.

Usage::

    python bench/serve_latency.py --preset pi0-tiny --dtype fp32 --device cpu   # this CPU
    python bench/serve_latency.py --preset pi0 --dtype bf16 --clients 1,4 \\
        --out bench/results/serve_latency_h100.json                           # a GPU

Builds a random-weight policy of the preset with openpi's ``pi0_libero``
transforms (8-d state, 7-d actions), serves it with the server ``ript serve``
runs (:class:`~ript_core.serve.server.PolicyServer` on a thread of this
process, loopback, a free port) and sends it LIBERO-shaped observations as
openpi's client does (two 224 px uint8 images, float64 state, prompt; one
msgpack frame each way). Per request it records:

- ``round_trip_ms``: the client's send -> reply decoded (what a robot waits);
- ``server_ms``: the server's ``server_timing.infer_ms`` (frame received ->
  chunk ready: input checks, queue, policy call);
- ``policy_ms``: ``policy_timing.infer_ms``, the policy call alone
  (preprocess, sampling, postprocess: what ``ript eval`` runs per chunk);
- ``network_ms`` = round trip - server: websocket, msgpack on both sides, loopback;
- ``queue_ms`` = server - policy: input checks and waiting for the policy thread.

``direct_ms`` times the same policy call in-process, without the server. With
``--clients N`` N clients send at once (each its own connection and thread)
and the server batches what waits (``--max-batch``, default N), so the rows
also give chunks per second. Weights are random: speed only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from websockets.sync.client import connect

from ript_core.bench.harness import DTYPES, model_parser, p90, run_meta
from ript_core.policy import PI0Policy
from ript_core.policy.io.pipeline import openpi_config
from ript_core.policy_input import PolicyInput
from ript_core.rl.actor import PI0Actor
from ript_core.serve.batcher import Batcher
from ript_core.serve.inputs import input_spec
from ript_core.serve.server import PolicyServer
from ript_core.serve.wire import packb, unpackb

PROMPT = "put the bowl on the plate"
IMAGE_PX = 224  # openpi's LIBERO client resizes to 224 before sending


def observation(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "observation/image": rng.integers(0, 256, (IMAGE_PX, IMAGE_PX, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (IMAGE_PX, IMAGE_PX, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),
        "prompt": PROMPT,
    }


def build_policy(preset: str, dtype: str, device: str) -> PI0Policy:
    # the arch's camera slots, each masked when missing: openpi's pi0_libero layout
    pipeline = attrs.evolve(openpi_config("pi0_libero").pipeline, cameras=None)
    return PI0Policy.from_preset(
        preset,
        seed=0,
        action_dim=7,
        state_dim=8,
        prompts=[PROMPT],
        pipeline=pipeline,
        dtype=DTYPES[dtype],
        device=device,
    )


class BackgroundServer:
    """A :class:`PolicyServer` on its own thread and event loop."""

    def __init__(self, server: PolicyServer) -> None:
        self.ready = threading.Event()
        self.port = 0
        self._server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout=120):
            raise RuntimeError("the server did not start")

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

        def on_ready(host: str, port: int) -> None:
            self.port = port
            self.ready.set()

        await self._server.serve("127.0.0.1", 0, on_ready, stop=self._stop)

    def close(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()


def client_run(port: int, n: int, warmup: int, seed: int, out: list[dict[str, float]]) -> None:
    """One client: ``warmup`` + ``n`` requests in a row; appends the timed ones."""
    rng = np.random.default_rng(seed)
    with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
        unpackb(ws.recv())  # metadata
        for i in range(warmup + n):
            obs = {**observation(rng), "noise_seed": seed * 100_000 + i}
            start = time.perf_counter()
            ws.send(packb(obs))
            reply = unpackb(ws.recv())
            rtt = 1e3 * (time.perf_counter() - start)
            if i >= warmup:
                server, policy = reply["server_timing"], reply["policy_timing"]
                out.append(
                    {
                        "round_trip_ms": rtt,
                        "server_ms": server["infer_ms"],
                        "policy_ms": policy["infer_ms"],
                        "batch_size": policy["batch_size"],
                        "end": time.perf_counter(),
                        "start": start,
                    }
                )


def summarise(samples: list[dict[str, float]], clients: int) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "p90": p90(values)}

    span = max(s["end"] for s in samples) - min(s["start"] for s in samples)
    return {
        "clients": clients,
        "requests": len(samples),
        "round_trip_ms": stats([s["round_trip_ms"] for s in samples]),
        "server_ms": stats([s["server_ms"] for s in samples]),
        "policy_ms": stats([s["policy_ms"] for s in samples]),
        "network_ms": stats([s["round_trip_ms"] - s["server_ms"] for s in samples]),
        "queue_ms": stats([s["server_ms"] - s["policy_ms"] for s in samples]),
        "mean_batch": statistics.mean(s["batch_size"] for s in samples),
        "chunks_per_s": len(samples) / span,
    }


def table(result: dict[str, Any]) -> str:
    """The rows as markdown: medians (p90) in ms, and chunks per second."""
    d = result["direct_ms"]
    lines = [
        f"{result['preset']} {result['dtype']} on {result['device']}, "
        f"{result['torch_threads']} torch threads; request {result['request_bytes']} bytes; "
        f"policy call without the server {d['median']:.1f} ({d['p90']:.1f}) ms",
        "",
        "| clients | round trip | policy call | network + msgpack | checks + queue "
        "| mean batch | chunks/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cells = [f"{r[k]['median']:.1f} ({r[k]['p90']:.1f})" for k in
                 ("round_trip_ms", "policy_ms", "network_ms", "queue_ms")]  # fmt: skip
        lines.append(
            f"| {r['clients']} | {' | '.join(cells)} | {r['mean_batch']:.2f} "
            f"| {r['chunks_per_s']:.1f} |"
        )
    return "\n".join(lines)


def direct_ms(actor: PI0Actor, device: torch.device, n: int, warmup: int) -> dict[str, float]:
    """The policy call alone, in-process, on the same kind of observation."""
    rng = np.random.default_rng(99)
    spec = input_spec("libero", ["base_0_rgb", "left_wrist_0_rgb"], [], 8)
    times = []
    for i in range(warmup + n):
        inp: PolicyInput = spec.policy_input(observation(rng))[0]
        start = time.perf_counter()
        actor.act([inp], [i])  # returns host arrays: the device work is done
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - start))
    return {"median": statistics.median(times), "p90": p90(times)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser: argparse.ArgumentParser = model_parser(__doc__)
    parser.set_defaults(preset="pi0-tiny", dtype="fp32")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per client")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per client first")
    parser.add_argument("--clients", default="1", help="comma-separated client counts, e.g. 1,4")
    parser.add_argument("--max-batch", type=int, default=None, help="default: the client count")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", default=None, help="write the result JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    policy = build_policy(args.preset, args.dtype, args.device)
    actor = PI0Actor(policy, "ode")
    spec = input_spec("libero", [c.key for c in policy.camera_slots], [], policy.state_dim)
    result: dict[str, Any] = {
        **run_meta(args.preset, args.dtype, policy.device),
        "torch_threads": torch.get_num_threads(),
        "request_bytes": len(packb(observation(np.random.default_rng(0)))),
        "rows": [],
    }
    for clients in [int(c) for c in args.clients.split(",")]:
        max_batch = args.max_batch or clients
        policy.expect_batch_sizes(range(1, max_batch + 1))
        batcher = Batcher(actor, max_batch)
        batcher.warm_up(
            spec.policy_input(observation(np.random.default_rng(0)))[0]
        )  # as ript serve
        server = BackgroundServer(PolicyServer(batcher, spec, {"server": "bench"}))
        samples: list[dict[str, float]] = []
        threads = [
            threading.Thread(
                target=client_run, args=(server.port, args.requests, args.warmup, c + 1, samples)
            )
            for c in range(clients)
        ]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            server.close()
            batcher.close()
        if len(samples) != clients * args.requests:
            raise RuntimeError(f"a client failed: {len(samples)} of {clients * args.requests}")
        result["rows"].append({"max_batch": max_batch, **summarise(samples, clients)})
    # last: the server rows warmed the policy up (first CPU calls are slow)
    result["direct_ms"] = direct_ms(actor, policy.device, args.requests, args.warmup)
    print(table(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
