"""``ript serve`` under bad frames, clients that leave, and concurrent clients."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ript_core.serve.wire import packb, unpackb
from tests.serve.conftest import (
    as_policy_input,
    libero_observations,
    read_client_replies,
    reference_chunks,
    run_openpi_client,
)

# Rows of one batched policy call differ from lone calls by float rounding
# only: measured max |diff| 2.4e-7 over 40 pairs of tiny-policy chunks
# (|actions| up to 4.7, float32; docs/serving.md). 20x that spread.
BATCH_ATOL = 5e-6


@contextlib.contextmanager
def _connect(server):
    with connect(server.url, compression=None, max_size=None, open_timeout=60) as ws:
        metadata = unpackb(ws.recv(timeout=60))
        assert metadata["server"] == "ript-core"
        yield ws


def _error_reply(server, frame) -> str:
    """What the server answers ``frame`` with: openpi's text frame, then close 1011."""
    with _connect(server) as ws:
        ws.send(frame)
        text = ws.recv(timeout=120)
        assert isinstance(text, str)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=60)
        assert closed.value.rcvd.code == 1011
    return text


def _served_chunk(server, obs) -> np.ndarray:
    with _connect(server) as ws:
        ws.send(packb(obs))
        return unpackb(ws.recv(timeout=300))["actions"]


def test_malformed_frames_get_errors_and_the_server_keeps_serving(libero_server, libero_checkpoint):
    (obs,) = libero_observations(1, seed=3)
    assert "not a msgpack observation" in _error_reply(libero_server, b"\xc1 not msgpack")
    assert "got a text frame" in _error_reply(libero_server, "{'prompt': 'hi'}")
    assert "must be a map of" in _error_reply(libero_server, packb([1, 2, 3]))
    bad = {**obs, "prompt": 5}
    assert "observation key 'prompt' must be a string" in _error_reply(libero_server, packb(bad))
    bad = {**obs, "observation/state": np.zeros(7)}
    assert "'observation/state' must be 8 numbers" in _error_reply(libero_server, packb(bad))
    bad = {**obs, "noise_seed": -1}
    assert "'noise_seed' must be an integer" in _error_reply(libero_server, packb(bad))
    want = reference_chunks(libero_checkpoint, [as_policy_input(obs)], [11])[0]
    np.testing.assert_array_equal(_served_chunk(libero_server, {**obs, "noise_seed": 11}), want)
    assert libero_server.alive()


def test_a_client_that_leaves_mid_request_does_not_take_the_server_down(
    libero_server, libero_checkpoint
):
    (obs,) = libero_observations(1, seed=4)
    obs["noise_seed"] = 5
    for _ in range(3):  # gone while its chunk is computed
        with _connect(libero_server) as ws:
            ws.send(packb(obs))
    with connect(libero_server.url, open_timeout=60):
        pass  # gone before reading the metadata
    with _connect(libero_server) as ws:
        ws.send(packb(obs))
        ws.socket.close()  # a TCP drop, no closing handshake
    want = reference_chunks(libero_checkpoint, [as_policy_input(obs)], [5])[0]
    np.testing.assert_array_equal(_served_chunk(libero_server, obs), want)
    assert libero_server.alive()
    assert "Traceback" not in libero_server.output()


def test_two_concurrent_openpi_clients_each_get_their_own_chunks(
    openpi_python, libero_server, libero_checkpoint, tmp_path
):
    streams = [libero_observations(5, seed=10 + c) for c in range(2)]
    for c, stream in enumerate(streams):
        for i, obs in enumerate(stream):
            obs["noise_seed"] = 1000 * c + i
    procs = [
        run_openpi_client(openpi_python, libero_server.port, s, tmp_path / f"c{c}", wait=False)
        for c, s in enumerate(streams)
    ]
    replies = [read_client_replies(p, tmp_path / f"c{c}") for c, p in enumerate(procs)]
    for c, (stream, reply) in enumerate(zip(streams, replies, strict=True)):
        assert reply["errors"] == [None] * len(stream)
        seeds = [1000 * c + i for i in range(len(stream))]
        want = reference_chunks(libero_checkpoint, [as_policy_input(o) for o in stream], seeds)
        for got, ref, timing in zip(reply["actions"], want, reply["policy_timing"], strict=True):
            if timing["batch_size"] == 1:
                np.testing.assert_array_equal(got, ref)
            else:  # shared a call with the other client's request
                np.testing.assert_allclose(got, ref, rtol=0, atol=BATCH_ATOL)
