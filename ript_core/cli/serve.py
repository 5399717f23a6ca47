"""``ript serve CHECKPOINT``: a policy behind openpi's websocket protocol (docs/serving.md)."""

from __future__ import annotations

import argparse
import logging

from rich.markup import escape

from ript_core.cli.checkpoint_options import add_checkpoint_options, checkpoint_load_options
from ript_core.cli.console import console
from ript_core.cli.registry import command

DEFAULT_PORT = 8000  # openpi's


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", help="a policy directory (ript, or a converted/raw openpi or lerobot one)"
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0: a free port"
    )
    add_checkpoint_options(p)
    p.add_argument(
        "--inputs",
        choices=("auto", "libero", "ript"),
        default="auto",
        help="observation keys clients send: libero (openpi's LIBERO client), ript (images, "
        "state, prompt); auto: libero for openpi LIBERO pipelines, else ript",
    )
    p.add_argument(
        "--mode",
        choices=("ode", "sde"),
        default="ode",
        help="ode: deterministic Euler sampling, as `ript eval` (default); sde: RIPT's sampler",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="most concurrent requests per policy call (default: 8 on a GPU, 1 on the CPU, "
        "where a batch costs as much as its requests one after another)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="noise seed of requests that send no noise_seed"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU intra-op threads (as `ript eval`)"
    )


def _input_format(choice: str, origin: str) -> str:
    if choice != "auto":
        return choice
    from ript_core.policy.io.pipeline import OPENPI_CONFIGS

    name = origin.removeprefix("openpi:")
    return OPENPI_CONFIGS[name].inputs if origin != name and name in OPENPI_CONFIGS else "ript"


@command("serve", "serve a policy checkpoint with openpi's websocket protocol", _serve_args)
def cmd_serve(ns: argparse.Namespace) -> int:
    if ns.max_batch is not None and ns.max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {ns.max_batch}")
    if ns.threads is not None and ns.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {ns.threads}")
    if not 0 <= ns.port < 65536:
        raise ValueError(f"--port must be in [0, 65535], got {ns.port}")
    try:
        import msgpack  # noqa: F401
        import websockets  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            f"ript serve needs websockets and msgpack ({exc}): pip install -e '.[serve]'"
        ) from exc
    import asyncio
    import time

    import numpy as np

    import ript_core
    from ript_core.policy.io.checkpoint import CheckpointError, load_policy
    from ript_core.policy_input import PolicyInput
    from ript_core.rl.actor import PI0Actor
    from ript_core.rl.host_threads import apply_rollout_threads
    from ript_core.serve.batcher import Batcher
    from ript_core.serve.inputs import SEED_KEY, input_spec
    from ript_core.serve.server import PolicyServer

    try:
        policy = load_policy(ns.checkpoint, device=ns.device, **checkpoint_load_options(ns))
    except (CheckpointError, FileNotFoundError) as exc:
        raise ValueError(str(exc)) from exc
    apply_rollout_threads(ns.threads, policy.device)
    slots = policy.camera_slots
    spec = input_spec(
        _input_format(ns.inputs, policy.pipeline.origin),
        [c.key for c in slots],
        [c.key for c in slots if c.if_missing == "error"],
        policy.state_dim,
    )
    max_batch = ns.max_batch or (1 if policy.device.type == "cpu" else 8)
    # the rollout runner's policy call, as `ript eval` makes it
    actor = PI0Actor(policy, ns.mode)
    policy.expect_batch_sizes(range(1, max_batch + 1))
    batcher = Batcher(actor, max_batch)
    size = policy.arch.image_size
    start = time.perf_counter()
    batcher.warm_up(
        PolicyInput(
            images={key: np.zeros((size, size, 3), np.uint8) for key in spec.camera_keys},
            state=np.zeros(policy.state_dim, np.float32),
            prompt="warm up",
        )
    )
    warm_s = time.perf_counter() - start
    metadata = {
        "server": "ript-core",
        "version": ript_core.__version__,
        "checkpoint": str(ns.checkpoint),
        "pipeline": policy.pipeline.origin,
        "inputs": spec.format,
        "observation_keys": spec.keys,
        "optional_keys": [SEED_KEY],
        "action_dim": policy.action_dim,
        "action_horizon": policy.chunk_size,
        "sampling": ns.mode,
        "max_batch": max_batch,
    }
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def ready(host: str, port: int) -> None:
        console.print(
            escape(
                f"serving {ns.checkpoint} ({policy.pipeline.origin} pipeline, {spec.format} "
                f"inputs {spec.keys}, {ns.mode}, {policy.device}, max batch {max_batch}, warmed "
                f"up in {warm_s:.1f} s) on ws://{host}:{port}"
            ),
            highlight=False,
            soft_wrap=True,
        )

    try:
        asyncio.run(
            PolicyServer(batcher, spec, metadata, seed=ns.seed).serve(ns.host, ns.port, ready)
        )
    finally:
        batcher.close()
    return 0
