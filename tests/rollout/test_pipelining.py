"""Issue 15: the pipelined rollout schedule.

Worker groups step while the policy serves another group. The rollouts must
be those of lock-step for the same seeds (only the schedule changes), and the
wall time must follow the analytic schedule: lock-step pays policy + env,
G = 2 pays max(policy, env) when the two sides cost the same.
"""

import os
import signal
import time

import numpy as np
import pytest
import torch

from ript_core.plan import (
    GB,
    BackendFootprint,
    InferenceCost,
    MachineSpec,
    PolicyFootprint,
    choose_pipeline,
    pipeline_option,
    plan,
    round_batch_sizes,
)
from ript_core.policy.buckets import batch_bucket
from ript_core.rollout.runner import EpisodeRequest, PolicyOutput, RolloutRunner
from ript_core.rollout.workers import InProcessEnvPool, ProcessEnvPool
from tests.rollout.test_runner import assert_same, toy_requests

TOY = BackendFootprint("toy", 20_000_000, 0.0003)  # one toy env worker's RAM and step time


@pytest.fixture(scope="module")
def lockstep_toy_rollouts():
    from tests.rollout.conftest import SeededPolicy

    with InProcessEnvPool(1) as pool:
        rollouts, _ = RolloutRunner(SeededPolicy(), pool, replan_every=4).run(toy_requests())
    return rollouts


@pytest.mark.parametrize(
    ("n_workers", "groups", "max_batch"), [(4, 2, None), (5, 3, None), (4, 4, None), (5, 2, 2)]
)
def test_pipelined_rollouts_equal_lockstep(
    n_workers, groups, max_batch, seeded_policy, lockstep_toy_rollouts
):
    policy = seeded_policy()
    with ProcessEnvPool(n_workers) as pool:
        runner = RolloutRunner(
            policy, pool, replan_every=4, pipeline_groups=groups, max_batch=max_batch
        )
        rollouts, stats = runner.run(toy_requests())
    assert_same(rollouts, lockstep_toy_rollouts)
    assert stats.pipeline_groups == groups and stats.discarded_episodes == 0
    # each policy call served one group (at most ceil(n / G) envs), never all of them
    biggest_group = -(-n_workers // groups)
    assert max(policy.batch_sizes) == min(biggest_group, max_batch or biggest_group)
    # the runner announced its full round's call sizes once, and the full
    # calls were those
    assert policy.announced == [round_batch_sizes(n_workers, groups, max_batch)]
    assert set(policy.batch_sizes[:groups]) <= set(policy.announced[0])
    assert stats.env_steps == sum(r.length for r in rollouts)


def test_groups_are_capped_at_the_pool_size(seeded_policy):
    with InProcessEnvPool(2) as pool:
        runner = RolloutRunner(seeded_policy(), pool, pipeline_groups=5)
        assert runner.pipeline_groups == 2
        with pytest.raises(ValueError, match="pipeline_groups must be >= 1"):
            RolloutRunner(seeded_policy(), pool, pipeline_groups=0)


def test_a_killed_worker_under_pipelining_reruns_its_episode(seeded_policy, lockstep_toy_rollouts):
    pool = ProcessEnvPool(4)

    def kill_worker_3(call):
        if call == 5:  # group 1's worker, while group 0 is being served
            os.kill(pool.pid(3), signal.SIGKILL)

    with pool:
        runner = RolloutRunner(
            seeded_policy(on_call=kill_worker_3), pool, replan_every=4, pipeline_groups=2
        )
        rollouts, stats = runner.run(toy_requests())
    assert stats.discarded_episodes == 1 and "worker 3" in stats.failures[0]
    assert_same(rollouts, lockstep_toy_rollouts)


# ---- the real tiny PI0 through the actor --------------------------------------------


def _pi0_summary(rollouts):
    return [(r.request, r.success, r.length, [s.n_executed for s in r.steps]) for r in rollouts]


def test_real_tiny_pi0_rollouts_do_not_depend_on_the_schedule():
    """Lock-step and G = 2 with the actor's per-sample generators.

    Each sample's noise comes from its own generator seeded by (episode,
    decision), so the initial noise of every chain is bitwise identical
    whatever the batch. The rest of the chain goes through batched matmuls
    whose summation order depends on the batch size (1.2e-7 on this CPU), so
    chains, log-probs and the env states they lead to agree to float
    rounding, and every discrete outcome (lengths, successes, chunks
    executed, rendered images) is identical.
    """
    from ript_core.rl.actor import PI0Actor
    from tests.rl.fixtures import tiny_policy

    torch.manual_seed(0)
    actor = PI0Actor(tiny_policy(), "sde")
    runs = {}
    threads = torch.get_num_threads()
    # one thread: on a loaded 2-core machine OpenMP threads spin-wait for a busy
    # core and a call of the tiny policy goes from ~10 ms to ~500 ms
    torch.set_num_threads(1)
    try:
        for groups in (1, 2):
            with InProcessEnvPool(4) as pool:
                runner = RolloutRunner(actor, pool, replan_every=5, pipeline_groups=groups)
                runs[groups], _ = runner.run(toy_requests(6))
    finally:
        torch.set_num_threads(threads)
    ref, piped = runs[1], runs[2]
    assert sum(len(r.steps) for r in ref) > 15
    assert _pi0_summary(piped) == _pi0_summary(ref)
    for a, b in zip(piped, ref, strict=True):
        for sa, sb in zip(a.steps, b.steps, strict=True):
            np.testing.assert_allclose(sa.policy_input.state, sb.policy_input.state, atol=1e-6)
            for cam in sb.policy_input.images:
                np.testing.assert_array_equal(
                    sa.policy_input.images[cam], sb.policy_input.images[cam]
                )
            assert torch.equal(sa.record["chain"][0], sb.record["chain"][0])
            torch.testing.assert_close(sa.record["chain"], sb.record["chain"], atol=1e-5, rtol=0)
            assert sa.record["log_prob"] == pytest.approx(sb.record["log_prob"], abs=1e-4)


def test_one_step_sde_draws_its_step_from_the_per_episode_generators():
    """sde_scheme='one': the stochastic step index must come from each sample's
    own generator too, or a sample's chunk would depend on its batch mates."""
    from ript_core.policy import PI0Policy
    from ript_core.rl.actor import PI0Actor
    from tests.rl.test_actor import toy_inputs

    policy = PI0Policy.from_preset(
        "pi0-tiny",
        prompts=["pick up the green block"],
        seed=0,
        action_dim=3,
        state_dim=3,
        logp_horizon=5,
        sde_scheme="one",
    )
    actor = PI0Actor(policy, "sde")
    inputs = toy_inputs(4)
    together = actor.act(inputs, seeds=[5, 6, 7, 8])
    alone = actor.act(inputs[1:2], seeds=[6])
    assert together.records[1]["stochastic_step"] == alone.records[0]["stochastic_step"]
    np.testing.assert_allclose(together.actions[1], alone.actions[0], atol=1e-5, rtol=0)


# ---- the schedule's wall time ---------------------------------------------------------

STEP_SLEEP_S = 0.020  # per env step, in the worker
REPLAN = 5  # env steps per chunk: E = 100 ms
PER_SAMPLE_S = 0.050  # policy stub: 50 ms per sample, so P(2) = E and P(4) = 2E
N_WORKERS = 4
MAX_STEPS = 20  # D = 4 decisions per episode


class SleepingPolicy:
    """A policy whose call costs a known time per sample (like a device whose
    work grows with the batch) and returns zero actions."""

    def __init__(self, per_sample_s: float) -> None:
        self.per_sample_s = per_sample_s

    def act(self, inputs, seeds):
        time.sleep(self.per_sample_s * len(inputs))
        return PolicyOutput(np.zeros((len(inputs), REPLAN, 2), np.float32), [{}] * len(inputs))


@pytest.fixture
def slow_pool(fakesim):
    # started after fakesim: spawned workers find the plugin through PYTHONPATH
    with ProcessEnvPool(N_WORKERS) as pool:
        yield pool


def analytic_wall_s(groups: int, p_group: float, env: float) -> float:
    """G groups of N/G envs, D decisions each. The first round of inferences
    runs back to back; then each period is max(policy of all groups, one
    group's policy + its envs' chunk); the last group's last chunk ends it."""
    d = MAX_STEPS // REPLAN
    period = max(groups * p_group, p_group + env)
    return groups * p_group + (d - 1) * period + env


def test_analytic_schedule_is_max_for_two_groups_and_sum_for_lockstep():
    d, env, p_all = MAX_STEPS // REPLAN, REPLAN * STEP_SLEEP_S, PER_SAMPLE_S * N_WORKERS
    assert analytic_wall_s(1, p_all, env) == pytest.approx(d * (p_all + env))  # policy + env
    # G = 2, P(2) = E: each half period is max(policy, env)
    assert analytic_wall_s(2, p_all / 2, env) == pytest.approx((2 * d + 1) * max(p_all / 2, env))
    # the planner's period model agrees with the schedule used here
    cost = InferenceCost(0.0, PER_SAMPLE_S)
    for g in (1, 2):
        o = pipeline_option(N_WORKERS, g, env, cost, replan_every=REPLAN)
        assert o.period_s == pytest.approx(max(p_all, p_all / g + env))


@pytest.mark.parametrize("groups", [1, 2])
def test_wall_time_follows_the_analytic_schedule(slow_pool, groups):
    """Lock-step takes policy + env per decision, G = 2 max(policy, env).

    On a loaded machine a ``time.sleep`` oversleeps by a few ms per call, so
    the analytic times use the costs the run really paid — the workers' own
    step timing and the policy calls' measured seconds — and the check is on
    the schedule: how those costs add up (or overlap) into the wall time.
    """
    opts = {"step_sleep_s": STEP_SLEEP_S}
    runner = RolloutRunner(
        SleepingPolicy(PER_SAMPLE_S),
        slow_pool,
        replan_every=REPLAN,
        max_steps=MAX_STEPS,
        env_options=opts,
        pipeline_groups=groups,
    )
    # warm-up: each worker builds its env (first plugin load, imports)
    warm = [EpisodeRequest(i, "fakesim", "slow", i, seed=i) for i in range(N_WORKERS)]
    RolloutRunner(
        SleepingPolicy(0.0), slow_pool, replan_every=REPLAN, max_steps=REPLAN, env_options=opts
    ).run(warm)
    reqs = [EpisodeRequest(i, "fakesim", "slow", i, seed=i) for i in range(N_WORKERS)]
    rollouts, stats = runner.run(reqs)
    d = MAX_STEPS // REPLAN
    assert [r.length for r in rollouts] == [MAX_STEPS] * N_WORKERS
    assert stats.policy_calls == d * groups
    # what the run paid: one chunk per worker per decision (resets cost ~0)
    env = stats.env_busy_s / (N_WORKERS * d)
    p_group = stats.policy_s / stats.policy_calls
    # a sleep never ends early; a busy scheduler makes it end late (here up to
    # ~4 ms per step at a load average of 9 on 2 cores)
    assert REPLAN * STEP_SLEEP_S <= env < 1.5 * REPLAN * STEP_SLEEP_S
    assert PER_SAMPLE_S * N_WORKERS / groups <= p_group < 1.5 * PER_SAMPLE_S * N_WORKERS / groups
    expected = analytic_wall_s(groups, p_group, env)
    assert stats.wall_s == pytest.approx(expected, rel=0.15), (stats.wall_s, expected)
    # busy fractions: the policy all its calls, each env its d chunks
    m = stats.as_metrics()
    assert m["rollout/policy_busy_frac"] == pytest.approx(stats.policy_s / stats.wall_s)
    assert m["rollout/policy_busy_frac"] == pytest.approx(d * groups * p_group / expected, rel=0.15)
    assert m["rollout/env_busy_frac"] == pytest.approx(d * env / expected, rel=0.15)
    assert m["rollout/pipeline_groups"] == groups


# ---- an asynchronous policy (submit / result) -------------------------------------------


class _Landing:
    """A call queued on :class:`DevicePolicy`'s device."""

    def __init__(self, future):
        self.future = future
        self.device_s = None

    def ready(self):
        return self.future.done()

    def result(self):
        out, self.device_s = self.future.result()
        return out


class DevicePolicy:
    """A policy with a device: ``submit`` spends ``host_s`` on the host
    (preprocessing), then queues ``device_s`` of work on a one-thread
    executor -- a device stream, first in first out -- and returns at once.
    Without ``asynchronous`` it only has ``act``, which does both in turn.
    The actions are :class:`SeededPolicy`'s; every slept time is recorded."""

    def __init__(self, host_s=0.0, device_s=0.0, asynchronous=True):
        from concurrent.futures import ThreadPoolExecutor

        from tests.rollout.conftest import SeededPolicy

        self.host_s, self.device_s = host_s, device_s
        self.seeded = SeededPolicy()
        self.device = ThreadPoolExecutor(1)
        self.host_times, self.device_times = [], []
        if asynchronous:
            self.submit = self._submit

    def expect_batch_sizes(self, sizes):
        self.seeded.expect_batch_sizes(sizes)

    def _sleep(self, seconds, into):
        t0 = time.perf_counter()
        time.sleep(seconds)
        into.append(time.perf_counter() - t0)

    def _work(self, inputs, seeds):
        t0 = time.perf_counter()
        self._sleep(self.device_s, self.device_times)
        return self.seeded.act(inputs, seeds), time.perf_counter() - t0

    def _submit(self, inputs, seeds):
        self._sleep(self.host_s, self.host_times)
        return _Landing(self.device.submit(self._work, inputs, seeds))

    def act(self, inputs, seeds):
        self._sleep(self.host_s, self.host_times)
        return self._work(inputs, seeds)[0]


@pytest.mark.parametrize(("n_workers", "groups", "max_batch"), [(4, 2, None), (5, 3, 1)])
def test_asynchronous_policy_gives_the_lockstep_rollouts(
    n_workers, groups, max_batch, lockstep_toy_rollouts
):
    policy = DevicePolicy(host_s=0.002, device_s=0.01)
    with ProcessEnvPool(n_workers) as pool:
        runner = RolloutRunner(
            policy, pool, replan_every=4, pipeline_groups=groups, max_batch=max_batch
        )
        rollouts, stats = runner.run(toy_requests())
    assert_same(rollouts, lockstep_toy_rollouts)
    assert stats.policy_calls == len(policy.device_times)
    # busy time is what the device reported, not the host's wall time
    assert stats.policy_s == pytest.approx(sum(t for _, t in stats.policy_call_times))
    assert stats.policy_s >= sum(policy.device_times)
    assert stats.policy_s < sum(policy.device_times) + 0.005 * stats.policy_calls


HOST_S = 0.040  # DevicePolicy's host share of a call
DEVICE_S = 0.100  # and its device share


def async_wall_s(groups: int, host: float, device: float, env: float) -> float:
    """G groups, D decisions, every call ``host`` then ``device``.

    Asynchronous: the device serves the calls back to back; a group's next
    call can be queued ``env + host`` after its last one landed, so the
    period is max(G × device, device + env + host). Synchronous: the host
    waits for each call, so every call costs ``host + device`` of the period."""
    d = MAX_STEPS // REPLAN
    period = max(groups * device, device + env + host)
    return host + groups * device + (d - 1) * period + env


@pytest.mark.parametrize("asynchronous", [True, False])
def test_an_asynchronous_policy_hides_its_host_time(slow_pool, asynchronous):
    """G = 2 with a call of 40 ms host + 100 ms device and 50 ms env chunks:
    the asynchronous policy pays max(2 × device, device + env + host) = 200
    ms a period, the synchronous one 2 × (host + device) = 280 ms."""
    opts = {"step_sleep_s": STEP_SLEEP_S / 2}  # 50 ms chunks
    warm = [EpisodeRequest(i, "fakesim", "slow", i, seed=i) for i in range(N_WORKERS)]
    RolloutRunner(
        SleepingPolicy(0.0), slow_pool, replan_every=REPLAN, max_steps=REPLAN, env_options=opts
    ).run(warm)
    policy = DevicePolicy(HOST_S, DEVICE_S, asynchronous)
    runner = RolloutRunner(
        policy,
        slow_pool,
        replan_every=REPLAN,
        max_steps=MAX_STEPS,
        env_options=opts,
        pipeline_groups=2,
    )
    reqs = [EpisodeRequest(i, "fakesim", "slow", i, seed=i) for i in range(N_WORKERS)]
    _, stats = runner.run(reqs)
    d = MAX_STEPS // REPLAN
    assert stats.policy_calls == 2 * d
    # the costs the run really paid (a sleep may end late on a loaded machine)
    env = stats.env_busy_s / (N_WORKERS * d)
    host = float(np.mean(policy.host_times))
    device = float(np.mean(policy.device_times))
    assert HOST_S <= host < 1.5 * HOST_S and DEVICE_S <= device < 1.5 * DEVICE_S
    if asynchronous:
        expected = async_wall_s(2, host, device, env)
    else:
        expected = analytic_wall_s(2, host + device, env)
    # asynchronous: within 8 % (measured ~1.5 % over). A runner that waited
    # for every call in flight at the end of each round -- group 1's envs,
    # already answered, waiting for group 2's call -- was 16 % over here.
    rel = 0.08 if asynchronous else 0.15
    assert stats.wall_s == pytest.approx(expected, rel=rel), (stats.wall_s, expected)
    # an env's wait for its chunk: the call's host and device time, plus at
    # most one other group's call queued ahead of it on the device
    latency = stats.policy_latency_s / stats.policy_calls
    assert stats.as_metrics()["rollout/policy_latency_ms"] == pytest.approx(1e3 * latency)
    if asynchronous:
        assert host + device <= latency < host + 2 * device
    else:
        assert host + device <= latency < host + device + 0.010
    assert stats.group_turns == 2 * (d + 1)  # the resets' replies, then d chunks each
    # the nominal costs: 890 ms against 1170 ms
    nominal = REPLAN * STEP_SLEEP_S / 2
    assert async_wall_s(2, HOST_S, DEVICE_S, nominal) == pytest.approx(0.89)
    assert analytic_wall_s(2, HOST_S + DEVICE_S, nominal) == pytest.approx(1.17)


# ---- the planner's choice of G ----------------------------------------------------------


def test_planner_keeps_lockstep_when_a_call_costs_the_same_at_any_batch():
    # a host-bound policy: splitting the envs only multiplies the calls
    pick = choose_pipeline(16, 0.3, InferenceCost(0.3, 0.0))
    assert pick.groups == 1 and pick.speedup == 1.0
    assert pick.lockstep.policy_util == pytest.approx(0.5)
    assert pick.lockstep.env_util == pytest.approx(0.5)
    assert pick.options[1].period_s == pytest.approx(0.6)  # two calls of 0.3 s per period


def test_planner_overlaps_when_inference_grows_with_the_batch():
    # P(16) = 160 ms = E: lock-step idles each side half of the time
    pick = choose_pipeline(16, 0.16, InferenceCost(0.0, 0.01), replan_every=5)
    lock = pick.lockstep
    assert lock.period_s == pytest.approx(0.32)
    assert (lock.policy_util, lock.env_util) == (pytest.approx(0.5), pytest.approx(0.5))
    # G = 4: T = max(4 × 40, 40 + 160) = 200 ms; G = 8: max(160, 180) = 180 ms
    assert pick.options[3].period_s == pytest.approx(0.2)
    assert pick.groups == 8 and pick.chosen.period_s == pytest.approx(0.18)
    assert pick.speedup == pytest.approx(0.32 / 0.18)
    assert pick.policy_util == pytest.approx(0.16 / 0.18)
    assert pick.env_util == pytest.approx(0.16 / 0.18)
    assert pick.chosen.steps_per_s == pytest.approx(16 * 5 / 0.18)
    forced = choose_pipeline(16, 0.16, InferenceCost(0.0, 0.01), override=2)
    assert forced.groups == 2 and forced.overridden


def test_short_episodes_pay_the_ramp_and_keep_lockstep():
    # costs measured on the H100 (docs/benchmarks.md): 16 envs, 25-step chunks,
    # 4 decisions per episode; G = 2 measured 0.94x of lock-step there
    cost, env = InferenceCost(0.3107, 0.00993), 0.3738
    assert choose_pipeline(16, env, cost, replan_every=25).groups == 2  # steady state
    short = choose_pipeline(16, env, cost, replan_every=25, decisions=4)
    assert short.groups == 1
    lock, two = short.options[0], short.options[1]
    assert lock.wave_s == pytest.approx(4 * lock.period_s)  # D × (P + E)
    assert two.wave_s == pytest.approx(two.policy_s + 3 * two.period_s + env)
    assert lock.wave_s / two.wave_s == pytest.approx(0.97, abs=0.01)
    assert two.steps_per_s == pytest.approx(16 * 4 * 25 / two.wave_s)


def test_inference_batch_splits_are_charged_per_call():
    # 8 envs, at most 4 per forward: lock-step makes two calls per period
    o = pipeline_option(8, 1, 0.05, InferenceCost(0.1, 0.01), inference_batch=4)
    assert o.calls_per_group == 2
    assert o.policy_s == pytest.approx(2 * 0.14)
    assert o.period_s == pytest.approx(2 * 0.14 + 0.05)


def test_inference_cost_fit_recovers_the_line_despite_a_slow_call():
    calls = [(b, 0.2 + 0.005 * b) for b in (1, 1, 4, 8, 8, 16)] + [(8, 3.0)]
    fit = InferenceCost.fit(calls)
    assert fit.call_s == pytest.approx(0.2, abs=1e-9)
    assert fit.per_sample_s == pytest.approx(0.005, abs=1e-9)
    one = InferenceCost.fit([(4, 0.1), (4, 0.3), (4, 0.2)])
    assert (one.call_s, one.per_sample_s) == (pytest.approx(0.2), 0.0)
    with pytest.raises(ValueError):
        InferenceCost.fit([])


def test_inference_estimate_matches_the_calibration_measurements():
    # bench/results/gpu_policy.json: pi0 bf16 on an H100, 2 cameras, 10 steps,
    # the CUDA-graph fast sampler (SDE): 36.5 ms at 1, 79.9 at 8, 248.5 at 32, 476.3 at 64
    gpu = MachineSpec.gpu(80 * GB, 16, 128 * GB)
    est = InferenceCost.estimate(PolicyFootprint.pi0(n_cameras=2), gpu)
    for batch, seconds in ((1, 0.0365), (8, 0.0799), (32, 0.2485), (64, 0.4763)):
        assert est.seconds(batch) == pytest.approx(seconds, rel=0.1)
    # pi0-tiny fp32 on the 2-core CPU: 9 ms at 1, 61 ms at 64
    cpu = MachineSpec.cpu_only(24 * GB, 2)
    tiny = InferenceCost.estimate(PolicyFootprint.pi0_tiny(), cpu)
    assert tiny.seconds(1) == pytest.approx(0.009, rel=0.15)
    assert tiny.seconds(64) == pytest.approx(0.061, rel=0.15)


def test_plan_chooses_pipeline_groups_and_the_user_wins():
    m = MachineSpec.cpu_only(24 * GB, 16)
    backend = BackendFootprint("slow", 20_000_000, 0.032)  # 5 steps = 160 ms
    cost = InferenceCost(0.0, 0.01)
    p = plan(m, PolicyFootprint.pi0_tiny(), backend, rollouts_per_update=15, inference_cost=cost)
    assert p.n_env_workers == 15 and p.pipeline_groups > 1
    assert p.settings()["pipeline_groups"] == p.pipeline_groups
    assert any(r.startswith(f"pipeline_groups {p.pipeline_groups}:") for r in p.reasons)
    assert "rollout schedule:" in p.summary()
    toy = plan(m, PolicyFootprint.pi0_tiny(), TOY, rollouts_per_update=15)
    assert toy.pipeline_groups == 1  # a 0.3 ms env never keeps the policy waiting
    forced = plan(
        m,
        PolicyFootprint.pi0_tiny(),
        TOY,
        rollouts_per_update=15,
        overrides={"pipeline_groups": 3},
    )
    assert forced.pipeline_groups == 3 and "pipeline_groups" in forced.overridden
    assert any("override: pipeline_groups = 3 (planner's choice: 1)" in r for r in forced.reasons)


def test_cli_plan_prints_the_predicted_utilisation_of_each_side(capsys):
    from ript_core.cli import main

    argv = ["plan", "--device", "cpu", "--cpu-ram-gb", "24", "--cores", "16"]
    rc = main([*argv, "--env-step-ms", "32", "--policy-call-ms", "0", "--policy-sample-ms", "10"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "rollout schedule" in out and "policy busy" in out and "envs busy" in out
    assert "chosen" in out and "pipeline_groups=" in out
    rc = main([*argv, "--pipeline-groups", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "pipeline_groups=2 (override)" in out


def test_bucketed_cost_charges_the_padded_batch():
    cost = InferenceCost(0.05, 0.01, bucketed=True)
    assert [batch_bucket(n) for n in (1, 2, 3, 32, 33, 43, 64, 65)] == [
        1,
        2,
        4,
        32,
        64,
        64,
        64,
        128,
    ]
    assert cost.seconds(43) == pytest.approx(cost.seconds(64)) == pytest.approx(0.05 + 0.64)
    assert InferenceCost(0.05, 0.01).seconds(43) == pytest.approx(0.05 + 0.43)
    # measured calls of a bucketing policy: 33..64 all ran as 64
    calls = [(b, 0.04 + 0.008 * batch_bucket(b)) for b in (3, 4, 20, 32, 33, 50, 64)]
    fit = InferenceCost.fit(calls, bucketed=True)
    assert (fit.call_s, fit.per_sample_s) == (pytest.approx(0.04), pytest.approx(0.008))
    assert fit.bucketed
    gpu = InferenceCost.estimate(
        PolicyFootprint.pi0(n_cameras=2), MachineSpec.gpu(80 * GB, 16, 128 * GB)
    )
    cpu = InferenceCost.estimate(PolicyFootprint.pi0_tiny(), MachineSpec.cpu_only(24 * GB, 2))
    assert gpu.bucketed and not cpu.bucketed


def test_planner_costs_the_announced_group_calls_unpadded():
    # the H100 run of 128 envs, 50-step chunks, 16 decisions (docs/benchmarks.md,
    # rollout_pipelining_h100_n128_gpu_resize.md): policy ms per call at the
    # mean batch of G = 1 / 2 / 4 (then padded to 128 / 64 / 32), the env chunk.
    # Before the runner announced its group sizes, 3 groups of 43 ran as 64.
    calls = [(116, 1.047), (58, 0.5388), (29, 0.292)]
    kw = dict(replan_every=50, decisions=16)
    cost = InferenceCost.fit(calls, bucketed=True)
    assert round_batch_sizes(128, 3) == (42, 43)
    assert round_batch_sizes(128, 4) == (32,)
    assert round_batch_sizes(128, 3, max_batch=16) == (10, 11, 16)
    plan = choose_pipeline(128, 0.766, cost, **kw)
    by_g = {o.groups: o for o in plan.options}
    line = cost.call_s + cost.per_sample_s * 43, cost.call_s + cost.per_sample_s * 42
    assert by_g[3].policy_s == pytest.approx(2 * line[0] + line[1])
    # the measured G = 2 and 4 (powers of two: nothing changes for them)
    speedup = {g: plan.lockstep.wave_s / o.wave_s for g, o in by_g.items()}
    assert speedup[2] == pytest.approx(1.35, abs=0.03)
    assert speedup[4] == pytest.approx(1.49, abs=0.03)
    # a call the runner did not announce still pads to its power of two
    assert cost.seconds(33, (42, 43)) == pytest.approx(cost.seconds(42, (42, 43)))
    assert cost.seconds(44, (42, 43)) == pytest.approx(cost.seconds(64))


def test_fast_sampler_pads_to_the_planners_bucket():
    from ript_core.policy.fast.sampler import FastSampler
    from tests.policy.conftest import make_inputs, tiny_policy

    policy = tiny_policy(num_steps=2)
    sampler = FastSampler(policy, use_graphs=False, bucket_batches=True)
    out = sampler.sample(policy.preprocess(make_inputs(3, seed=1)), "ode", None, None, 0.0, 2)
    assert out.actions.shape[0] == 3
    (graph,) = sampler._graphs.values()
    assert {t.shape[0] for t in graph.inputs.values()} == {batch_bucket(3)} == {4}


def test_announced_batch_sizes_get_graphs_of_their_own():
    """A pipelined runner's groups of 3 run as 3, not padded to 4; a batch of
    2 still takes its power of two, a batch of 5 its 8 (nothing announced
    holds it) -- the planner's ``batch_bucket`` with the same sizes."""
    from ript_core.policy.fast.sampler import FastSampler
    from tests.policy.conftest import make_inputs, tiny_policy

    policy = tiny_policy(num_steps=2)
    sampler = FastSampler(policy, use_graphs=False, bucket_batches=True)
    sampler.batch_sizes.update(round_batch_sizes(9, 3))
    assert sampler.batch_sizes == {3}
    for n in (3, 2, 5):
        out = sampler.sample(policy.preprocess(make_inputs(n, seed=n)), "ode", None, None, 0.0, 2)
        assert out.actions.shape[0] == n
    runs = sorted({t.shape[0] for g in sampler._graphs.values() for t in g.inputs.values()})
    assert runs == sorted({batch_bucket(n, {3}) for n in (3, 2, 5)}) == [2, 3, 8]
