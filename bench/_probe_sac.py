"""Temporary: where selective checkpointing's GPU memory goes (not committed)."""
import gc, json, sys, time
import torch
sys.path.insert(0, "bench")
from gpu_policy import make_inputs, gens, update_step
from ript_core.policy import PI0Policy
from ript_core.policy.checkpointing import set_activation_checkpointing
from ript_core.policy.fast_sampler import FastSampler

pol = PI0Policy.from_preset("pi0", seed=0, dtype=torch.bfloat16, device="cuda", logp_horizon=5)
fast = FastSampler(pol)
dev = pol.device
GB = 1e9
def mem(): return round(torch.cuda.memory_allocated(dev) / GB, 2)
for micro in (8, 16):
    step, batch, out = update_step(pol, fast, micro, 2)
    for mode in ("off", "selective", "full"):
        set_activation_checkpointing(pol.model, mode)
        row = {"micro": micro, "mode": mode}
        try:
            pol.zero_grad(set_to_none=True); gc.collect(); torch.cuda.synchronize()
            row["before"] = mem()
            torch.cuda.reset_peak_memory_stats(dev)
            logp = pol.log_prob(batch, out.chain, out.stochastic_step)
            torch.cuda.synchronize()
            row["after_forward"] = mem(); row["fwd_peak"] = round(torch.cuda.max_memory_allocated(dev) / GB, 2)
            logp.sum().backward(); del logp
            torch.cuda.synchronize()
            row["peak"] = round(torch.cuda.max_memory_allocated(dev) / GB, 2)
            row["after_backward"] = mem()
            pol.zero_grad(set_to_none=True)
            row["after_zero_grad"] = mem()
            gc.collect(); row["after_gc"] = mem()
            # timing: 3 steps
            torch.cuda.synchronize(); t = time.perf_counter()
            for _ in range(3): step()
            torch.cuda.synchronize(); row["ms"] = round((time.perf_counter() - t) / 3 * 1e3, 1)
            pol.zero_grad(set_to_none=True); gc.collect(); row["after_steps_gc"] = mem()
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {e}"[:200]
        set_activation_checkpointing(pol.model, "off")
        print(json.dumps(row), flush=True)
        torch.cuda.empty_cache()
    del step, batch, out
