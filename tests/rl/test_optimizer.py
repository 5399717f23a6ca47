"""float32 master weights for bf16 parameters (ript_core.rl.optimizer)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from ript_core.rl.optimizer import MasterWeightAdamW, MasterWeights, collect_grads, make_adamw

LR = 1e-4  # RIPT's scale: far below a bf16 weight's spacing at magnitude ~1


def _bf16_param(seed: int = 0, n: int = 64) -> nn.Parameter:
    g = torch.Generator().manual_seed(seed)
    return nn.Parameter((torch.rand(n, generator=g) + 0.5).to(torch.bfloat16))


def _direction(seed: int, n: int = 64) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def _backward(p: nn.Parameter, c: torch.Tensor) -> None:
    # d/dp of sum(p * c) is c, rounded to p's dtype by autograd
    (p.float() * c).sum().backward()


def test_master_weights_follow_a_float32_adamw_that_bf16_adamw_cannot():
    p = _bf16_param()
    opt, params = make_adamw([p], lr=LR, weight_decay=0.0)
    assert isinstance(opt, MasterWeightAdamW) and params[0].dtype == torch.float32
    # the independent reference: plain AdamW on a float32 copy, fed the same
    # (bf16-rounded) gradients
    ref = nn.Parameter(p.detach().float().clone())
    ref_opt = torch.optim.AdamW([ref], lr=LR, weight_decay=0.0)
    # what the trainer did before: AdamW stepping the bf16 tensor itself
    naive = nn.Parameter(p.detach().clone())
    naive_opt = torch.optim.AdamW([naive], lr=LR, weight_decay=0.0)
    start = p.detach().clone()
    for step in range(20):
        c = _direction(step).abs() + 0.5  # one sign: the steps add up
        for param, o in ((p, opt), (naive, naive_opt)):
            o.zero_grad()
            _backward(param, c)
            o.step()
        ref_opt.zero_grad()
        ref.grad = c.to(torch.bfloat16).float()
        ref_opt.step()
    assert torch.equal(params[0], ref)  # the master is the float32 run, bit for bit
    assert torch.equal(p, ref.to(torch.bfloat16))  # the model computes with it, rounded
    # 20 steps of ~1e-4 on weights in [0.5, 1.5] (bf16 spacing 2e-3 to 8e-3):
    # the float32 run moved ~2e-3, the bf16 AdamW rounded (almost) every step away
    moved = (ref - start.float()).abs().mean()
    assert moved > 1e-3
    assert (naive.float() - start.float()).abs().mean() < moved / 4


def test_gradients_accumulate_in_float32_and_the_bf16_ones_are_freed():
    p = _bf16_param(1)
    opt, (master,) = make_adamw([p], lr=LR)
    c1, c2 = _direction(10), _direction(11)
    _backward(p, c1)
    assert p.grad is None  # moved by the hook: no bf16 gradient stays alive
    _backward(p, c2)
    expected = c1.to(torch.bfloat16).float() + c2.to(torch.bfloat16).float()
    assert master.grad.dtype == torch.float32 and torch.equal(master.grad, expected)
    # a gradient assigned directly (not through autograd) is picked up too
    p.grad = torch.ones_like(p)
    collect_grads(opt)
    assert p.grad is None and torch.equal(master.grad, expected + 1)
    opt.zero_grad()
    assert master.grad is None


def test_float32_parameters_are_their_own_masters():
    w32 = nn.Parameter(torch.ones(3))
    opt, params = make_adamw([w32], lr=LR)
    assert type(opt) is torch.optim.AdamW and params[0] is w32
    w16 = nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    opt, params = make_adamw([w32, w16], lr=LR)
    assert params[0] is w32 and params[1] is not w16 and params[1].dtype == torch.float32


def test_state_dict_keeps_the_low_bits_a_resume_needs():
    def run(steps, start=None, state=None):
        p = nn.Parameter(start.clone()) if start is not None else _bf16_param(2)
        opt, (master,) = make_adamw([p], lr=LR)
        if state is not None:
            opt.load_state_dict(state)
        for step in steps:
            opt.zero_grad()
            _backward(p, _direction(100 + step))
            opt.step()
        return p, master, opt

    p_ref, m_ref, _ = run(range(10))
    p_a, m_a, opt_a = run(range(5))
    assert not torch.equal(m_a, p_a.float())  # the master holds bits bf16 lost
    state = opt_a.state_dict()
    p_b, m_b, _ = run(range(5, 10), start=p_a.detach(), state=state)
    assert torch.equal(m_b, m_ref) and torch.equal(p_b, p_ref)


def test_a_second_optimizer_on_the_same_weights_hands_them_back():
    """The trainer's optimizer exists before the BC warm start's: BC must get
    the gradients while it trains, and the trainer's masters must start from
    the BC-trained weights, not from the ones they were copied from."""
    p = _bf16_param(3)
    trainer_opt, (trainer_master,) = make_adamw([p], lr=LR)
    bc_opt, (bc_master,) = make_adamw([p], lr=1e-2)
    for step in range(3):
        bc_opt.zero_grad()
        _backward(p, _direction(200 + step))
        assert trainer_master.grad is None and bc_master.grad is not None
        bc_opt.step()
    after_bc = p.detach().clone()
    assert not torch.equal(trainer_master, after_bc.float())
    del bc_opt, bc_master  # the warm start is over
    trainer_opt.zero_grad()
    assert torch.equal(trainer_master, after_bc.float())
    _backward(p, _direction(300))
    assert torch.equal(trainer_master.grad, _direction(300).to(torch.bfloat16).float())


def test_fused_adamw_steps_fsdp_sharded_and_plain_parameters_together():
    """FSDP shards its units' parameters (DTensors) and leaves the rest plain;
    the fused AdamW that make_adamw picks on CUDA refused a group mixing the
    two (seen on 2 H100s). One gloo rank on CPU, where fused AdamW exists too."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    ref = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    ref.load_state_dict(model.state_dict())
    x = torch.randn(3, 4)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        fully_shard(model[0])
        kinds = {isinstance(p, DTensor) for p in model.parameters()}
        assert kinds == {True, False}
        opt, params = make_adamw(list(model.parameters()), lr=1e-2, fused=True)
        model(x).sum().backward()
        opt.step()  # raised "got mixed torch.Tensor and DTensor" with one group
        assert len(opt.param_groups) == 2 and len(params) == 4
        got = {
            k: v.full_tensor() if isinstance(v, DTensor) else v
            for k, v in model.state_dict().items()
        }
    finally:
        dist.destroy_process_group()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    ref(x).sum().backward()
    ref_opt.step()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(got[k], v)


# --- optim.moments "8bit": bitsandbytes' AdamW8bit over the same masters -------------


def _adamw_8bit_run(moments: str, steps: int, n: int = 8192):
    """``steps`` AdamW steps on a bf16 parameter (``n`` values: above
    bitsandbytes' 4096-value threshold for 8-bit moments) with random
    gradients; returns (start, master after, model param after, optimizer)."""
    p = _bf16_param(5, n)
    start = p.detach().float().clone()
    opt, (master,) = make_adamw([p], moments=moments, lr=1e-3, weight_decay=0.0)
    for step in range(steps):
        opt.zero_grad()
        _backward(p, _direction(100 + step, n))
        opt.step()
    return start, master.detach().clone(), p.detach().clone(), opt


def test_8bit_moments_step_the_masters_close_to_float32_adamw():
    start, m8, p8, opt8 = _adamw_8bit_run("8bit", 20)
    _, m32, _, _ = _adamw_8bit_run("fp32", 20)
    assert isinstance(opt8, MasterWeights) and m8.dtype == torch.float32
    state = opt8.state[opt8.masters[0]]
    assert state["state1"].dtype == state["state2"].dtype == torch.uint8  # one byte each
    assert torch.equal(p8, m8.to(torch.bfloat16))  # the model computes with the master
    d8, d32 = m8 - start, m32 - start
    assert not torch.equal(d8, d32)  # the moments really are quantised
    # ... to ~1 %: the 20-step update is the float32 one within a few per cent
    rel = (d8 - d32).norm() / d32.norm()
    assert rel < 0.05, rel
    assert torch.nn.functional.cosine_similarity(d8, d32, dim=0) > 0.999


def test_8bit_optimizer_state_resumes_bit_for_bit():
    """Checkpoint after 3 steps, rebuild from the saved weights and state,
    take 3 more: identical to 6 uninterrupted steps (masters, moments, model)."""
    _, m_ref, p_ref, _ = _adamw_8bit_run("8bit", 6)
    _, _, p_cut, opt = _adamw_8bit_run("8bit", 3)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    p = nn.Parameter(p_cut.clone())
    resumed, (master,) = make_adamw([p], moments="8bit", lr=1e-3, weight_decay=0.0)
    resumed.load_state_dict(torch.load(buf, weights_only=False))
    for step in range(3, 6):
        resumed.zero_grad()
        _backward(p, _direction(100 + step, 8192))
        resumed.step()
    assert torch.equal(master, m_ref) and torch.equal(p, p_ref)


def test_8bit_moments_without_bitsandbytes_name_the_install(monkeypatch):
    import importlib.util

    from ript_core.rl import optimizer

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )
    monkeypatch.setattr(optimizer, "_ADAMW_8BIT", {})
    with pytest.raises(ImportError, match=r"pip install 'ript-core\[bnb\]'"):
        make_adamw([_bf16_param()], moments="8bit", lr=LR)
    with pytest.raises(ValueError, match="optim.moments 'adam8'"):
        make_adamw([_bf16_param()], moments="adam8", lr=LR)
