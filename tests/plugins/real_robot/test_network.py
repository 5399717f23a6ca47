"""The network driver against the digital twin served by ``ript robot serve``
in another process, over real websockets on loopback: version check, the
server's watchdog, no replayed action, a cut link mid-episode."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from ript_real_robot.config import TWIN_DEFAULT, RobotConfig
from ript_real_robot.network import NetworkDriver
from ript_real_robot.operator import Operator
from ript_real_robot.protocol import PROTOCOL_VERSION, ProtocolError, pack, unpack
from ript_real_robot.recorder import read_episode
from websockets.sync.client import connect

from ript_core import EpisodeDiscarded, structure
from tests.plugins.real_robot.conftest import require_twin
from tests.plugins.real_robot.link import Relay, served_robot

WATCHDOG_S = 0.3


@pytest.fixture(scope="module")
def url():
    require_twin()
    with served_robot(watchdog_s=WATCHDOG_S) as u:
        yield u


def port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_another_protocol_version_is_refused_before_any_motion(url):
    watcher = NetworkDriver(url)
    watcher.connect()
    before = watcher.status()["executed"]
    old = NetworkDriver(url, protocol_version=PROTOCOL_VERSION + 1)
    with pytest.raises(ProtocolError, match=f"speaks link protocol {PROTOCOL_VERSION}"):
        old.connect()
    assert not old.connected
    with pytest.raises(Exception, match="not connected"):
        old.send(np.zeros(4))
    assert watcher.status()["executed"] == before
    watcher.close()


def test_server_watchdog_stops_the_robot_when_the_client_goes_silent(url):
    d = NetworkDriver(url)
    d.connect()
    d.prepare_scene("cube_00", 0)
    stops = d.status()["stops"]
    d.send(np.array([0.1, 0.0, 0.0, 1.0]))
    time.sleep(WATCHDOG_S * 0.5)
    assert d.status()["stops"] == stops  # within the deadline: still moving
    d.send(np.array([0.1, 0.0, 0.0, 1.0]))
    time.sleep(WATCHDOG_S * 3)  # silent past the deadline
    status = d.status()
    assert status["stops"] == stops + 1  # stopped once, not once per deadline
    assert any("watchdog" in e for e in status["events"])
    d.close()


def test_an_action_frame_is_executed_once_whatever_is_resent(url):
    def call(ws, msg):
        ws.send(pack(msg))
        return unpack(ws.recv(timeout=5))

    with connect(url, proxy=None) as ws:
        welcome = call(ws, {"op": "hello", "protocol": PROTOCOL_VERSION, "client": "dup-test"})
        assert welcome["last_seq"] == 0
        executed = call(ws, {"op": "status"})["executed"]
        act = {"op": "act", "action": np.zeros(4)}
        replies = [call(ws, {**act, "seq": s})["executed"] for s in (1, 1, 2, 1, 3)]
        assert replies == [True, False, True, False, True]
        status = call(ws, {"op": "status"})
        assert status["executed"] == executed + 3 and status["seqs"] == [1, 2, 3]
        call(ws, {"op": "stop"})
    # a new connection of the same client carries on after its last action
    d = NetworkDriver(url)
    d.client_id = "dup-test"
    d.connect()
    assert d.seq == 3
    d.close()


def test_a_cut_link_mid_episode_discards_it_and_the_run_goes_on(url, tmp_path):
    from ript_real_robot.env import RealRobotEnv

    relay = Relay(port(url))
    cfg = structure(RobotConfig, {**TWIN_DEFAULT, "driver": {
        "kind": "network", "url": f"ws://127.0.0.1:{relay.port}", "timeout_s": 2.0}})  # fmt: skip
    cfg.tasks[0].max_steps = 3
    env = RealRobotEnv(cfg, "pick_cube", episodes_dir=tmp_path,
                       operator=Operator(io.StringIO("n\n"), io.StringIO()))  # fmt: skip
    driver = env.stack.raw
    try:
        env.reset(seed=1, options={"init_state": 0})
        env.step(np.array([0.2, 0.0, 0.0, 1.0]))
        relay.cut()
        with pytest.raises(EpisodeDiscarded, match="robot link lost"):
            env.step(np.array([0.2, 0.0, 0.0, 1.0]))
        (record,) = tmp_path.glob("*discarded.npz")
        assert "robot link lost" in read_episode(record)[0]["reason"]
        # the next episode reconnects and runs to its label
        env.reset(seed=2, options={"init_state": 1})
        for _ in range(3):
            *_, info = env.step(np.array([0.2, 0.0, 0.0, 1.0]))
        assert driver.reconnects == 1 and info["success"] is False
        status = driver.status()
        # 1 + 3 actions executed, each once, in order; the cut one at most once
        assert status["seqs"] == sorted(set(status["seqs"])) and len(status["seqs"]) in (4, 5)
        assert status["seqs"][-1] == driver.seq
        assert any("closed while moving" in e for e in status["events"])
    finally:
        env.close()
        relay.close()
