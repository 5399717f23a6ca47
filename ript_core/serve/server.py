"""openpi's websocket policy server protocol, in front of a :class:`Batcher`.

Per connection: the server's first frame is the metadata (msgpack, binary);
then each binary frame from the client is one observation and gets one
binary frame back: ``{"actions": [chunk, action_dim], "policy_timing":
{"infer_ms", "batch_size"}, "server_timing": {"infer_ms", "prev_total_ms"}}``
(openpi's keys; ``batch_size`` is ours). A request that fails gets openpi's
error reply: a *text* frame with the error, then close code 1011 -- so an
``openpi-client`` raises ``RuntimeError`` with the text, which for a bad
observation is one line naming the key (:mod:`.inputs`). Other connections
are untouched and the client may reconnect. ``GET /healthz`` answers 200 "OK".
"""

from __future__ import annotations

import asyncio
import http
import logging
import signal
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from ript_core.rollout.runner import decision_seed
from ript_core.serve.batcher import Batcher
from ript_core.serve.inputs import InputSpec, ObservationError
from ript_core.serve.wire import packb, unpackb

log = logging.getLogger(__name__)

#: openpi's close reason after an error frame
ERROR_REASON = "Internal server error. Traceback included in previous frame."


class PolicyServer:
    """Serves ``batcher``'s policy to any number of connections.

    A request without ``noise_seed`` gets ``decision_seed(seed, n)`` for the
    server's n-th such request: reproducible for one client that replays the
    same requests to a fresh server.
    """

    def __init__(
        self,
        batcher: Batcher,
        spec: InputSpec,
        metadata: Mapping[str, Any],
        *,
        seed: int = 0,
    ) -> None:
        self.batcher = batcher
        self.spec = spec
        self.metadata = dict(metadata)
        self.seed = seed
        self._requests = 0

    def _next_seed(self) -> int:
        self._requests += 1
        return decision_seed(self.seed, self._requests - 1)

    async def _infer(self, data: str | bytes) -> dict[str, Any]:
        if isinstance(data, str):
            raise ObservationError("an observation is a binary msgpack frame, got a text frame")
        try:
            obs = unpackb(data)
        except Exception as exc:
            raise ObservationError(f"the frame is not a msgpack observation ({exc})") from exc
        policy_input, seed = self.spec.policy_input(obs)
        chunk = await asyncio.wrap_future(
            self.batcher.submit(policy_input, self._next_seed() if seed is None else seed)
        )
        return {
            "actions": chunk.actions,
            "policy_timing": {"infer_ms": chunk.infer_ms, "batch_size": chunk.batch_size},
        }

    async def handle(self, ws: ServerConnection) -> None:
        """One client: metadata, then observation in, chunk out, until it leaves."""
        peer = ws.remote_address
        await ws.send(packb(self.metadata))
        prev_total_ms = None
        while True:
            start = time.monotonic()
            try:
                data = await ws.recv()
                infer_start = time.monotonic()
                reply = await self._infer(data)
                timing = {"infer_ms": 1e3 * (time.monotonic() - infer_start)}
                if prev_total_ms is not None:
                    timing["prev_total_ms"] = prev_total_ms
                reply["server_timing"] = timing
                await ws.send(packb(reply))
            except ConnectionClosed:
                # a client that leaves, even mid-request, ends only its own connection
                log.info("client %s disconnected", peer)
                return
            except Exception as exc:
                known = isinstance(exc, ObservationError)
                text = f"{type(exc).__name__}: {exc}" if known else traceback.format_exc()
                log.warning("client %s: %s", peer, text if known else repr(exc))
                try:
                    await ws.send(text)
                    await ws.close(CloseCode.INTERNAL_ERROR, ERROR_REASON)
                except ConnectionClosed:
                    pass
                return
            prev_total_ms = 1e3 * (time.monotonic() - start)

    @staticmethod
    def health(connection: ServerConnection, request: Any) -> Any:
        """``GET /healthz`` -> 200 OK, before any websocket upgrade (orchestrators)."""
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    async def serve(
        self,
        host: str,
        port: int,
        on_ready: Callable[[str, int], None] | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Serve until ``stop`` is set (default: until SIGINT/SIGTERM);
        ``on_ready(host, port)`` once listening (``port=0`` picks a free
        port: the one bound is passed)."""
        server: Server
        async with serve(
            self.handle,
            host,
            port,
            compression=None,
            max_size=None,
            process_request=self.health,
        ) as server:
            bound = server.sockets[0].getsockname()[1] if server.sockets else port
            if on_ready is not None:
                on_ready(host, bound)
            if stop is None:
                stop = asyncio.Event()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            await stop.wait()
