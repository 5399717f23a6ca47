"""Runs in the openpi-client venv (numpy < 2, no ript_core): sends the
requests a test wrote with openpi's ``WebsocketClientPolicy`` and writes the
replies back. After an error reply the server has closed the connection, as
openpi's does: the script connects again, as a robust robot client would.

usage: python openpi_client_run.py PORT WORKDIR
  WORKDIR/requests.npz  arrays keyed "<request>|<observation key>" (0-d: a numpy scalar)
  WORKDIR/requests.json one dict of the other observation values per request
writes WORKDIR/replies.npz (actions keyed by request) and replies.json
(metadata, server_timing, policy_timing, errors, numpy version).
"""

import json
import sys
from pathlib import Path

import numpy as np
from openpi_client import websocket_client_policy

port, workdir = int(sys.argv[1]), Path(sys.argv[2])
plain = json.loads((workdir / "requests.json").read_text())
requests = [dict(entry) for entry in plain]
with np.load(workdir / "requests.npz") as arrays:
    for name in arrays.files:
        index, key = name.split("|", 1)
        value = arrays[name]
        requests[int(index)][key] = value[()] if value.ndim == 0 else value  # numpy scalar

client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port)
out = {"metadata": client.get_server_metadata(), "numpy": np.__version__}
out.update(server_timing=[], policy_timing=[], errors=[], dtypes=[])
actions = {}
for i, obs in enumerate(requests):
    try:
        reply = client.infer(obs)
    except RuntimeError as exc:
        out["errors"].append(str(exc))
        out["server_timing"].append(None)
        out["policy_timing"].append(None)
        out["dtypes"].append(None)
        client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port)
        continue
    actions[str(i)] = reply["actions"]
    out["errors"].append(None)
    out["server_timing"].append(reply["server_timing"])
    out["policy_timing"].append(reply["policy_timing"])
    out["dtypes"].append(reply["actions"].dtype.str)
np.savez(workdir / "replies.npz", **actions)
(workdir / "replies.json").write_text(json.dumps(out))
