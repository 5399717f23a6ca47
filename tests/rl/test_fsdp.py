"""FSDP (``update.distributed="fsdp"``) on CPU: two gloo ranks against one process.

``tests/rl/fsdp_worker.py`` runs once alone (plain policy, all 8 decisions)
and once under ``torchrun --nproc_per_node 2`` (policy sharded, the decisions
split 7/1 so that the ranks run different numbers of micro-batches); both
take one clipped AdamW step. The two runs share one module-scoped fixture
because a torchrun launch is the slow part.
"""

from pathlib import Path
from typing import Any

import attrs
import pytest
import torch

from ript_core.policy import load_policy
from ript_core.rl.distributed_update import clip_grad_norm
from ript_core.rl.fsdp import DISTRIBUTED_MODES, shard_units
from tests.rl.fixtures import run_worker, tiny_policy


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fsdp")
    run_worker(repo_root, "tests/rl/fsdp_worker.py", out)
    run_worker(repo_root, "tests/rl/fsdp_worker.py", out, ranks=2)
    load = lambda tag: torch.load(out / tag / "result.pt", weights_only=False)  # noqa: E731
    return {"one": load("one"), "two": load("two"), "dir": out}


def test_fsdp_two_process_gradients_and_step_equal_one_process_on_the_whole_batch(runs):
    one, two = runs["one"], runs["two"]
    # the layers and the embedding were sharded; the leftovers were not
    assert two["n_sharded"] > 50 and one["n_sharded"] == 0
    g1, g2 = one["grads"], two["grads"]
    assert g1.keys() == g2.keys() and len(g1) > 10
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], atol=1e-6, rtol=1e-5)
    assert any(g.abs().sum() > 0 for g in g1.values())
    # the global norm over shards + replicated grads; the clip (max 0.05) engaged
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    assert one["grad_norm"] > 1.0
    assert one["optimizer_steps"] == two["optimizer_steps"] == 1
    # AdamW on the shards: same moments and weights. AdamW's first step is
    # lr * g / (|g| + eps); a 1e-9 gradient difference can move a weight by
    # up to 1e-7 (lr 1e-3, eps 1e-8), a wrong gradient by ~1e-3
    for k in one["moments"]:
        for m in one["moments"][k]:
            torch.testing.assert_close(two["moments"][k][m], one["moments"][k][m])
    for k in one["weights"]:
        torch.testing.assert_close(two["weights"][k], one["weights"][k], atol=2e-6, rtol=1e-5)
    # BC under averaged_gradients (identical batches on both ranks) = one process
    assert two["bc_norm"] == pytest.approx(one["bc_norm"], rel=1e-5) and one["bc_norm"] > 0.5
    assert two["bc_grads"].keys() == one["bc_grads"].keys()
    for k in one["bc_grads"]:
        torch.testing.assert_close(two["bc_grads"][k], one["bc_grads"][k], atol=1e-6, rtol=1e-5)
    # sampling under Sharding.gathered (ranks making different numbers of calls)
    torch.testing.assert_close(two["chain"], one["chain"], atol=1e-5, rtol=1e-5)


def test_fsdp_checkpoint_loads_into_a_plain_single_process_policy(runs):
    one, two, out = runs["one"], runs["two"], runs["dir"]
    policy = load_policy(out / "two" / "policy")
    state = policy.model.state_dict()
    reference = load_policy(out / "one" / "policy").model.state_dict()
    assert state.keys() == reference.keys()
    for k, v in state.items():
        assert not hasattr(v, "full_tensor"), k  # plain tensors, not DTensor shards
        torch.testing.assert_close(v, reference[k], atol=2e-6, rtol=1e-5)
    for k, w in two["weights"].items():  # exactly what the ranks held, gathered
        assert torch.equal(state[k], w), k
    # the optimizer state: gathered, saved, loaded into a fresh optimizer on
    # every rank, gathered again -> identical; keyed by parameter name
    assert two["optim_roundtrip"]
    saved = two["optim_state"]["state"]
    assert "model.dit.layers.0.mlp.down_proj.weight" in saved
    torch.testing.assert_close(
        saved["model.dit.layers.0.mlp.down_proj.weight"]["exp_avg"],
        one["moments"]["model.dit.layers.0.mlp.down_proj.weight"]["exp_avg"],
    )


def test_shard_units_are_the_layers_and_embedding_with_trainable_weights():
    policy = tiny_policy()
    model = policy.model
    units = shard_units(model)
    vlm = model.model.vlm
    assert len(units) == 2 + 2 + 2 + 1
    assert vlm.language_model.embed_tokens in units
    policy.config = attrs.evolve(policy.config, train_vision=False)
    policy.apply_trainable()
    units = shard_units(model)
    assert not any(u in units for u in vlm.vision_tower.encoder.layers)  # frozen: replicated
    assert len(units) == 5
    assert set(DISTRIBUTED_MODES) == {"ddp", "fsdp", "auto"}


def test_clip_grad_norm_alone_matches_torch():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b, strict=True):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    b[1].grad = None  # a parameter without a gradient is left out of the norm
    a[1].grad = None
    n1 = torch.nn.utils.clip_grad_norm_(a, 0.5)
    n2 = clip_grad_norm(b, 0.5)
    torch.testing.assert_close(n2, n1)
    for p, q in zip(a, b, strict=True):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad)


def test_fsdp_training_resumed_from_its_checkpoint_equals_an_uninterrupted_run(
    tmp_path: Path, repo_root: Path
):
    from tests.rl.test_trainer import final_weights, metric_lines

    run_worker(repo_root, "tests/rl/fsdp_train_worker.py", tmp_path, ranks=2)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    lines = metric_lines(ref)
    assert any(d.get("update/optimizer_steps") for d in lines)  # it did train
    # the cut run's first leg ended with its final evaluation at iteration 1
    cut_lines = [d for d in metric_lines(cut) if not (d.get("eval/final") and d["iteration"] == 1)]
    assert cut_lines == lines
    ref_w, cut_w = final_weights(ref), final_weights(cut)
    assert ref_w.keys() == cut_w.keys()
    for k in ref_w:
        torch.testing.assert_close(cut_w[k], ref_w[k], atol=1e-6, rtol=0)
    # RIPT moved the weights away from the post-BC checkpoint 0
    first = load_policy(ref / "checkpoints" / "iter_000000" / "policy").state_dict()
    assert first.keys() == ref_w.keys()
    assert any(not torch.equal(first[k], v) for k, v in ref_w.items())


def test_fsdp_footprint_charges_a_rank_its_share_of_gradients_and_adamw_state():
    from ript_core import plan as P
    from ript_core.rl.fsdp import fsdp_footprint, sharded_trainable

    policy = tiny_policy()
    fp = P.PolicyFootprint.from_hf_config(policy.arch.pi0_config, dtype_bytes=4, n_cameras=2)
    shard = sharded_trainable(policy.model)
    assert 0.5 * fp.n_trainable < shard < fp.n_trainable  # layers + embedding: most of it
    two = fsdp_footprint(fp, policy.model, 2)
    assert two.n_trainable == fp.n_trainable - shard + (shard + 1) // 2
    assert two.n_params == fp.n_params  # weights stay whole: rollouts gather them
    assert P.optimizer_state_bytes(two) < P.optimizer_state_bytes(fp)
    assert P.grad_bytes(two) < P.grad_bytes(fp)


def test_update_distributed_defaults_to_ddp_and_rejects_unknown_modes():
    from ript_core.rl.config import TrainConfig, UpdateConfig

    assert TrainConfig().update.distributed == "ddp"
    with pytest.raises(ValueError, match="update.distributed 'zero3'"):
        TrainConfig(update=UpdateConfig(distributed="zero3")).check()  # type: ignore[arg-type]


def test_fsdp_with_a_bf16_policy_is_refused_before_anything_is_built():
    # the sharded AdamW would step bf16 weights: no float32 masters there
    from ript_core.policy.config import PolicyConfig
    from ript_core.rl.config import TrainConfig, UpdateConfig

    cfg = TrainConfig(
        policy=PolicyConfig(dtype="bfloat16"), update=UpdateConfig(distributed="fsdp")
    )
    with pytest.raises(ValueError, match="'fsdp' with policy.dtype 'bfloat16'.*use"):
        cfg.check()
    attrs_ok = TrainConfig(policy=PolicyConfig(dtype="bfloat16"), init_checkpoint="ckpt")
    attrs_ok.check()  # ddp (the default) is fine
