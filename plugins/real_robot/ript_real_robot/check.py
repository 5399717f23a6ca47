"""``ript robot check``: connect, read every camera and the state, time the
readings, list the safety settings; nothing is sent to the robot (the stack
is built in dry-run mode, so even a bug here could not move it)."""

from __future__ import annotations

import time

import attrs
import numpy as np

from ript_real_robot.config import RobotConfig
from ript_real_robot.stack import build_stack


def check_robot(cfg: RobotConfig, reads: int = 20) -> str:
    t0 = time.perf_counter()
    stack = build_stack(cfg, dry_run=True)
    connect_s = time.perf_counter() - t0
    try:
        info = stack.top.info
        latencies = []
        reading = None
        for _ in range(max(reads, 1)):
            t = time.perf_counter()
            reading = stack.top.read()
            latencies.append(time.perf_counter() - t)
        assert reading is not None
        status = stack.top.status()
    finally:
        stack.close()
    lat = np.asarray(latencies) * 1e3
    lines = [
        f"robot {info.name}: connected in {connect_s:.2f} s ({cfg.driver.kind} driver)",
        f"  control {info.control_hz:g} Hz, actions {info.action_dim}-d {info.action_kind}, "
        f"state {info.state_dim}-d (joints {info.joints[0]}:{info.joints[1]}"
        + (f", ee {info.ee[0]}:{info.ee[1]})" if info.ee else ")"),
        f"  reading: {len(latencies)} reads, {1e3 / lat.mean():.1f} reads/s, latency "
        f"median {np.median(lat):.1f} ms, max {lat.max():.1f} ms",
    ]
    for cam in info.cameras:
        img = reading.images[cam]
        lines.append(
            f"  camera {cam}: {img.shape[1]}x{img.shape[0]} {img.dtype}, mean {img.mean():.1f}"
        )
    state = np.array2string(np.asarray(reading.state), precision=3, max_line_width=200)
    lines.append(f"  state: {state}")
    lines.append(f"  status: {status}")
    lines.append("  safety (None: not set, that limit is off):")
    lines += [f"    {k}: {v}" for k, v in attrs.asdict(cfg.safety).items()]
    lines.append("nothing was sent to the robot")
    return "\n".join(lines)
