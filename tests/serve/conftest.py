"""A served tiny checkpoint, clients for it, and the in-process reference.

The server is the real command (``python -m ript_core serve``) in a
subprocess, on loopback with a free port. openpi's own client runs in a
virtual environment of its own, as on a robot's machine: ``openpi-client``
pins ``numpy<2``, which must not touch the project's environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch

from ript_core.policy_input import PolicyInput

OPENPI_CLIENT = "openpi-client==0.1.2"
# its code imports typing_extensions without declaring it
OPENPI_CLIENT_DEPS = (OPENPI_CLIENT, "typing_extensions")
LIBERO_PROMPTS = ("put the bowl on the plate", "open the top drawer of the cabinet")
CLIENT_SCRIPT = Path(__file__).with_name("openpi_client_run.py")
# websockets >= 15 and urllib route even 127.0.0.1 through HTTP_PROXY unless told not to
NO_PROXY = "127.0.0.1,localhost"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, NO_PROXY)


def client_env() -> dict[str, str]:
    return {**os.environ, "NO_PROXY": NO_PROXY, "no_proxy": NO_PROXY}


@pytest.fixture(scope="session")
def openpi_python() -> Path:
    """The interpreter of a venv with the real ``openpi-client``, built once
    per machine and Python (cached in the temp dir; ~40 s to build). It fails
    loudly if the package cannot be installed: CI has the package registry."""
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    root = Path(tempfile.gettempdir()) / f"ript-{OPENPI_CLIENT.replace('==', '-')}-{tag}"
    python, done = root / "bin" / "python", root / ".complete"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest process may be building it
        if not done.is_file():
            subprocess.run(["rm", "-rf", str(root)], check=True)
            steps = [
                [sys.executable, "-m", "venv", str(root)],
                [str(python), "-m", "pip", "install", "--quiet", *OPENPI_CLIENT_DEPS],
            ]
            for step in steps:
                proc = subprocess.run(step, capture_output=True, text=True, timeout=600)
                if proc.returncode != 0:
                    pytest.fail(
                        f"could not build the openpi-client venv ({' '.join(step)}):\n"
                        f"{proc.stdout}\n{proc.stderr}"
                    )
            done.write_text(OPENPI_CLIENT)
    return python


def save_tiny(directory: Path, *, libero: bool) -> Path:
    """A saved pi0-tiny: with ``libero``, LIBERO's dims and openpi's pi0_libero
    transforms (PIL resize, delta actions); else the toy backend's dims."""
    from ript_core.policy import PI0Policy, save_policy
    from ript_core.policy.io.pipeline import openpi_config

    if libero:
        # pi0-tiny has two camera slots; openpi's third (right wrist) is masked anyway
        pipeline = attrs.evolve(openpi_config("pi0_libero").pipeline, cameras=None)
        policy = PI0Policy.from_preset(
            "pi0-tiny", seed=0, action_dim=7, state_dim=8, prompts=LIBERO_PROMPTS, pipeline=pipeline
        )
    else:
        policy = PI0Policy.from_preset("pi0-tiny", seed=0, action_dim=3, state_dim=3)
    return save_policy(policy, directory)


@pytest.fixture(scope="session")
def libero_checkpoint(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("serve") / "libero", libero=True)


class Served:
    """``ript serve CHECKPOINT ARGS`` in a subprocess on 127.0.0.1, a free port."""

    def __init__(self, checkpoint: Path, log: Path, args: Sequence[str] = ()) -> None:
        self.log = log
        cmd = [sys.executable, "-m", "ript_core", "serve", str(checkpoint)]
        cmd += ["--host", "127.0.0.1", "--port", "0", "--threads", "1", *args]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.port = self._wait_for_port(timeout_s=300)

    def _wait_for_port(self, timeout_s: float) -> int:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            found = re.search(r"on ws://127\.0\.0\.1:(\d+)", self.output())
            if found:
                return int(found.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"ript serve exited ({self.proc.returncode}):\n{self.output()}"
                )
            time.sleep(0.2)
        self.close()
        raise AssertionError(f"ript serve did not start in {timeout_s} s:\n{self.output()}")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def served(checkpoint: Path, log: Path, args: Sequence[str] = ()) -> Iterator[Served]:
    server = Served(checkpoint, log, args)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def libero_server(libero_checkpoint, tmp_path_factory) -> Iterator[Served]:
    """One server for the LIBERO-shaped tests; batches up to 2 concurrent requests."""
    log = tmp_path_factory.mktemp("serve_log") / "libero.log"
    with served(libero_checkpoint, log, ["--max-batch", "2"]) as server:
        yield server


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reference_chunks(
    checkpoint: Path, inputs: Sequence[PolicyInput], seeds: Sequence[int]
) -> list[np.ndarray]:
    """The chunks the rollout runner's policy call computes in this process,
    one call per input (as a lone client is served), on the server's 1 thread."""
    from ript_core.policy import load_policy
    from ript_core.rl.actor import PI0Actor

    with torch_threads(1):
        actor = PI0Actor(load_policy(checkpoint), "ode")
        return [actor.act([i], [s]).actions[0] for i, s in zip(inputs, seeds, strict=True)]


def libero_observations(n: int, seed: int) -> list[dict]:
    """LIBERO-shaped observations as openpi's client sends them: 224 px
    images (resized and rotated client-side), the 8-d float64 state."""
    rng = np.random.default_rng(seed)
    return [
        {
            "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
            "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
            "observation/state": rng.normal(size=8),
            "prompt": LIBERO_PROMPTS[i % len(LIBERO_PROMPTS)],
        }
        for i in range(n)
    ]


def as_policy_input(obs: dict) -> PolicyInput:
    """What openpi's LiberoInputs makes of ``obs``, in the policy's slots."""
    return PolicyInput(
        images={
            "base_0_rgb": obs["observation/image"],
            "left_wrist_0_rgb": obs["observation/wrist_image"],
        },
        state=obs["observation/state"],
        prompt=obs["prompt"],
    )


def run_openpi_client(
    python: Path, port: int, requests: Sequence[dict], workdir: Path, *, wait: bool = True
):
    """Run :data:`CLIENT_SCRIPT` with openpi's client; ``requests`` are
    observations (numpy values, str, int). Returns its replies (see the
    script), or the running process when ``wait`` is False."""
    workdir.mkdir(parents=True, exist_ok=True)
    arrays, plain = {}, []
    for i, obs in enumerate(requests):
        entry = {}
        for key, value in obs.items():
            if isinstance(value, np.ndarray | np.generic):  # a scalar travels 0-d
                arrays[f"{i}|{key}"] = np.asarray(value)
            else:
                entry[key] = value
        plain.append(entry)
    np.savez(workdir / "requests.npz", **arrays)
    (workdir / "requests.json").write_text(json.dumps(plain))
    cmd = [str(python), str(CLIENT_SCRIPT), str(port), str(workdir)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=client_env()
    )
    return read_client_replies(proc, workdir) if wait else proc


def read_client_replies(proc: subprocess.Popen, workdir: Path) -> dict:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    replies = json.loads((workdir / "replies.json").read_text())
    with np.load(workdir / "replies.npz") as actions:
        replies["actions"] = [
            actions[str(i)] if str(i) in actions.files else None
            for i in range(len(replies["errors"]))
        ]
    return replies
