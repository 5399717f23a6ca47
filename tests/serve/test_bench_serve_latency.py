"""bench/serve_latency.py's code path on CPU with pi0-tiny (no timing assertions)."""

from __future__ import annotations

import json


def test_serve_latency_bench_runs_and_splits_its_times(load_bench, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    bench = load_bench("serve_latency")
    out = tmp_path / "serve.json"
    args = ["--preset", "pi0-tiny", "--dtype", "fp32", "--device", "cpu", "--threads", "1"]
    bench.main([*args, "--requests", "3", "--warmup", "1", "--clients", "1,2", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [(r["clients"], r["requests"]) for r in result["rows"]] == [(1, 3), (2, 6)]
    for row in result["rows"]:
        # the parts add up: round trip = network + server, server = queue + policy
        assert 0 < row["policy_ms"]["median"] <= row["server_ms"]["median"]
        assert row["server_ms"]["median"] < row["round_trip_ms"]["median"]
        assert row["network_ms"]["median"] > 0 and row["queue_ms"]["median"] >= 0
        assert 1 <= row["mean_batch"] <= row["clients"] and row["chunks_per_s"] > 0
    assert result["request_bytes"] > 2 * 224 * 224 * 3  # two raw images on the wire
