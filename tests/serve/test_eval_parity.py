"""A served chunk is the chunk ``ript eval`` computes, bit for bit, for the
same observation and noise seed: both go through the rollout runner's policy
call (``PI0Actor``), the server with the seed the client sends."""

from __future__ import annotations

import numpy as np
from websockets.sync.client import connect

from ript_core.cli import main
from ript_core.rl.actor import PI0Actor
from ript_core.serve.wire import packb, unpackb
from tests.serve.conftest import save_tiny, served, torch_threads


def test_served_chunks_equal_ript_evals(tmp_path, monkeypatch):
    checkpoint = save_tiny(tmp_path / "toy", libero=False)
    calls = []  # (inputs, seeds, pending) of every policy call eval makes
    submit = PI0Actor.submit

    def spy(self, inputs, seeds):
        pending = submit(self, inputs, seeds)
        calls.append((list(inputs), list(seeds), pending))
        return pending

    monkeypatch.setattr(PI0Actor, "submit", spy)
    args = [str(checkpoint), "--tasks", "reach-red", "reach-blue", "--init-states", "0:2"]
    args += ["--workers", "0", "--max-steps", "8", "--replan-every", "4", "--threads", "1"]
    with torch_threads(1):
        assert main(["eval", *args]) == 0
    decisions = [
        (inp, seed, pending.result().actions[i])
        for inputs, seeds, pending in calls
        for i, (inp, seed) in enumerate(zip(inputs, seeds, strict=True))
    ]
    # 4 episodes of up to 2 decisions, each with a seed of its own
    assert len(decisions) >= 4 and len({seed for _, seed, _ in decisions}) == len(decisions)

    with (
        served(checkpoint, tmp_path / "serve.log") as server,
        connect(server.url, compression=None, max_size=None, open_timeout=60) as ws,
    ):
        assert unpackb(ws.recv(timeout=60))["inputs"] == "ript"
        for inp, seed, chunk in decisions:
            obs = {
                "images": dict(inp.images),
                "state": inp.state,
                "prompt": inp.prompt,
                "noise_seed": seed,
            }
            ws.send(packb(obs))
            served_chunk = unpackb(ws.recv(timeout=300))["actions"]
            np.testing.assert_array_equal(served_chunk, chunk)
