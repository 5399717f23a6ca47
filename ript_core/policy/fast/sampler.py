"""The fast sampling path: a static prefix KV cache and one CUDA graph per chunk.

What makes transformers' ``sample_actions`` (and the eager
:meth:`PI0Policy.sample`) host-bound on a GPU is Python and kernel launches,
not arithmetic: ~20 kernels per layer x (27 SigLIP + 18 Gemma + 10 x 18
expert) layers, a ``DynamicCache`` that grows by the suffix and is cropped
back every step, the block attention mask rebuilt every step, and host syncs
(``cache.get_seq_length()``, mask shortcuts that call ``.all()``).

Here one chunk is a pure tensor function of fixed-shape inputs
(:meth:`FastSampler._chunk`):

1. the prefix (SigLIP + Gemma), its valid tokens reordered to the front
   (:func:`valid_first_order`), writes its keys/values straight into a
   pre-allocated ``[B, P + S, kv_heads, head_dim]`` buffer per layer
   (:class:`PrefixKVCache`, slots ``[0, P)``);
2. each denoising step writes only the suffix's ``S = chunk + 1`` keys/values,
   right after each sample's valid prefix, and attends to the whole buffer:
   nothing grows, nothing is cropped. Every query then sees a leading run of
   its sample's keys: FlashAttention's key limits on CUDA
   (:mod:`.varlen_attention`), the same limits as boolean masks elsewhere, built
   once per chunk with tensor ops (transformers' mask factory, which may
   sync to test ``mask.all()``, never runs), as are the RoPE positions;
3. the float64 time embeddings of the grid (precision.py) are computed once,
   when the graph is built (they depend only on the step count);
4. the SDE noise (and, for ``sde_scheme="one"``, the stochastic step) is drawn
   *outside* the graph, in exactly the order of the eager sampler, from the
   caller's generator(s) -- per-sample generators keep per-sample streams.

On CUDA that function is captured once per input signature in a
``torch.cuda.CUDAGraph`` and each chunk is a few ``copy_`` into the static
inputs plus one replay. On CPU (tests) the same function runs eagerly, so the
maths is checked without a GPU. The eager path stays the reference:
``PolicyConfig.fast_sampler=False`` or a non-CUDA device uses it.

Graphs read parameters by address. In-place optimizer steps keep addresses
(the graph sees new weights); anything that replaces a parameter tensor
(``load_state_dict(assign=True)``, ``p.data = ...``, a cast, re-sharding)
changes the fingerprint the sampler checks on every call
(:mod:`.param_watch`) and triggers a re-capture. docs/policy.md ("The fast
sampling path") walks through the design and its measurements.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ript_core.policy.attention import with_attention_backends
from ript_core.policy.batch import PolicyBatch
from ript_core.policy.buckets import batch_bucket  # the planner costs the same buckets
from ript_core.policy.fast import varlen_attention
from ript_core.policy.fast.compiled_layers import compiled_layers
from ript_core.policy.fast.fused_projections import ExpertFusion
from ript_core.policy.fast.kv_only_layer import last_layer_kv_only
from ript_core.policy.fast.param_watch import watch
from ript_core.policy.fast.prefix_cache import PrefixKVCache, valid_first_order
from ript_core.policy.fast.varlen_attention import (
    key_limited_attention,
    limit_mask,
    prefix_limits,
    split_keys,
    suffix_key_limits,
    suffix_limits,
)
from ript_core.policy.flow import StepCoefficients, gaussian_log_prob, take_step
from ript_core.policy.sampling import Generators, SampleOutput, draw_randint, draw_randn

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ript_core.policy.policy import PI0Policy


class _Graph:
    """Static inputs/outputs of one chunk signature, its constants (``plan``)
    and, on CUDA, the captured graph."""

    def __init__(self, inputs: dict[str, torch.Tensor], plan: dict[str, Any]) -> None:
        self.inputs = inputs
        self.plan = plan
        self.graph: torch.cuda.CUDAGraph | None = None


class FastSampler:
    """Runs :meth:`PI0Policy.sample` through the static-cache chunk function,
    captured in CUDA graphs when ``use_graphs`` (default: on CUDA)."""

    def __init__(
        self,
        policy: PI0Policy,
        use_graphs: bool | None = None,
        compile_layers: bool = False,
        bucket_batches: bool | None = None,
        varlen: bool | None = None,
        fuse_projections: bool | None = None,
        key_splits: int | None = None,
    ) -> None:
        self.policy = policy
        self.use_graphs = policy.device.type == "cuda" if use_graphs is None else use_graphs
        # FlashAttention over key-length limits instead of SDPA over boolean
        # masks (varlen_attention.py). Default: wherever the flash kernel
        # runs and the policy asks for SDPA (the default; another
        # attn_implementation is the user's choice everywhere); forced on
        # elsewhere (tests) it runs a dense reference.
        head_dim = policy.model.config.dit_config.head_dim
        self.varlen = (
            policy.config.attn_implementation == "sdpa"
            and varlen_attention.flash_applies(policy.dtype, policy.device, head_dim)
            if varlen is None
            else varlen
        )
        # A rollout's batch is the number of envs waiting for a decision, so
        # it varies call to call; one graph (capture + memory pool) per exact
        # size would pile up. With buckets a batch is padded to the next power
        # of two (pad rows copy row 0, results are sliced off): <= log2(B)+1
        # graphs. Default: on with graphs.
        self.bucket_batches = self.use_graphs if bucket_batches is None else bucket_batches
        self.compile_layers = compile_layers
        # the expert's q/k/v and gate/up as one GEMM each during the steps
        # (fused_projections.py): fewer small GEMMs per step, 396 MB of fused
        # copies for PI0. Default: with graphs (CUDA), where launches count.
        self.fuse_projections = self.use_graphs if fuse_projections is None else fuse_projections
        self._fusion: ExpertFusion | None = None
        #: key chunks of the expert's key-limited attention (split_keys):
        #: None picks per batch where flash runs (key_splits_for), 1 never splits
        self.key_splits = key_splits
        #: batch sizes announced by the caller (:meth:`PI0Policy.expect_batch_sizes`):
        #: each gets a graph of its own instead of padding to a power of two
        self.batch_sizes: set[int] = set()
        self._graphs: dict[tuple[Any, ...], _Graph] = {}
        self._fingerprint: tuple[Any, ...] | None = None
        self._watch = watch(policy.model)
        self._time_embeds: dict[tuple[int, int, torch.device], torch.Tensor] = {}
        self.capture_error: str | None = None

    # ---- bookkeeping -------------------------------------------------------------

    @contextlib.contextmanager
    def _layers_compiled(self) -> Iterator[None]:
        """For one chunk: with ``compile_layers``, the layers' compiled calls
        (:mod:`.compiled_layers`, made on first use); with ``varlen``, the
        key-limited attention function."""
        with contextlib.ExitStack() as stack:
            if self.varlen:
                inner = self.policy.model.model
                stack.enter_context(key_limited_attention(inner.vlm.language_model, inner.dit))
            if self.compile_layers:
                stack.enter_context(compiled_layers(self.policy.model).installed())
            yield

    def clear(self) -> None:
        """Drop every captured graph and its memory pool."""
        self._graphs.clear()
        self._fusion = None
        self._time_embeds.clear()
        self._fingerprint = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _key_splits(self, bsz: int, device: torch.device, keys: int) -> int:
        """Key chunks for the expert's attention at this batch: the forced
        value, or -- with compiled layers, where flash runs and its
        log-sum-exp is per row -- :func:`~.varlen_attention.key_splits_for`
        FlashAttention's grid (query blocks x sequences x heads) on this GPU."""
        if not self.varlen:
            return 1
        if self.key_splits is not None:
            return self.key_splits
        # uncompiled, the merge of the chunks is a dozen small kernels per call,
        # which at batch 1 cost more than the split saved; compiled layers fuse
        # it into about three
        if not self.compile_layers:
            return 1
        if device.type != "cuda" or not varlen_attention.flash_lse_is_per_row(device):
            return 1
        heads = self.policy.model.config.dit_config.num_attention_heads
        rows = self._suffix_rows_per_token()
        max_q = self.policy.chunk_size * rows  # the action tokens' sequence
        # FlashAttention's grid: query blocks x (state, actions) x unfolded heads
        grid = -(-max_q // varlen_attention.FLASH_BLOCK_M) * 2 * bsz * (heads // rows)
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return varlen_attention.key_splits_for(grid, keys, sms)

    def _suffix_rows_per_token(self) -> int:
        """Query rows per suffix token in the key-limited route: the expert's
        heads when they are folded into the rows (one KV head), else 1."""
        cfg = self.policy.model.config.dit_config
        fold = varlen_attention.FOLD_HEADS and cfg.num_key_value_heads == 1
        return cfg.num_attention_heads if fold else 1

    def _params_fingerprint(self) -> tuple[Any, ...]:
        # addresses + dtypes: an in-place update keeps them (graphs stay valid);
        # a replaced or re-cast parameter changes them (graphs must be rebuilt).
        # param_watch.py: without walking the modules on every call
        return self._watch.fingerprint()

    @staticmethod
    def supported(policy: PI0Policy) -> bool:
        """The fast path drives plain tensors; sharded (DTensor) parameters
        gather through hooks a graph cannot capture -- those use the eager path."""
        return not watch(policy.model).sharded()  # param_watch.py: no walk per call

    # ---- the chunk function --------------------------------------------------------

    def _time_embed_table(self, steps: int, bsz: int, device: torch.device) -> torch.Tensor:
        """``[steps, B, H]`` float64 sinusoidal embeddings of ``t_i = 1 + i*dt``
        (as the eager loop's float64 ``t``), computed once per step count."""
        key = (steps, bsz, device)
        if key not in self._time_embeds:
            coeffs = StepCoefficients.build(steps, 0.0)
            emb = self.policy.model.embed_action_time.sinusoid_embeds
            rows = [
                emb(torch.full((bsz,), t, dtype=torch.float64, device=device)) for t in coeffs.t
            ]
            self._time_embeds[key] = torch.stack(rows)
        return self._time_embeds[key]

    def _time_terms(self, time_embeds: torch.Tensor) -> torch.Tensor:
        """``[steps, B, H]``: the time half of ``action_time_mlp_in`` plus its
        bias, for every step at once. ``W @ [a; t] + b = W_a @ a + (W_t @ t + b)``:
        ``t`` is one vector per sample and step, so its half is multiplied
        ``B * steps`` times per chunk instead of ``B * chunk * steps`` (a third
        of the float32 action-time MLP's FLOPs). Inside the chunk function
        (not in the plan): the weights change between chunks in training."""
        mlp_in = self.policy.model.embed_action_time.action_time_mlp_in
        width = mlp_in.in_features // 2
        te = time_embeds.to(mlp_in.weight.dtype)  # float64 -> float32, as transformers casts
        return F.linear(te, mlp_in.weight[:, width:], mlp_in.bias)

    def _action_time_embeds(
        self, state: torch.Tensor, x: torch.Tensor, time_term: torch.Tensor
    ) -> torch.Tensor:
        """transformers' ``PI0ActionTimeEmbedding.forward`` with the time half
        of ``action_time_mlp_in`` given (:meth:`_time_terms`); cast to the
        expert's dtype as precision.py's hook does."""
        m = self.policy.model.embed_action_time
        state_embeds = m.state_proj(state)
        action_embeds = m.action_in_proj(x)
        width = action_embeds.shape[-1]
        hidden = F.linear(action_embeds, m.action_time_mlp_in.weight[:, :width])
        merged = m.action_time_mlp_out(F.silu(hidden + time_term[:, None, :]))
        out = torch.cat([state_embeds[:, None, :], merged], dim=1)
        return out.to(self.policy.dtype)

    def _chunk(self, s: dict[str, torch.Tensor], plan: dict[str, Any]) -> None:
        """One chunk, reading and writing only the tensors of ``s`` (static
        buffers under a graph): prefix into the static cache, then the steps."""
        with self._layers_compiled():
            self._chunk_body(s, plan)

    def _chunk_body(self, s: dict[str, torch.Tensor], plan: dict[str, Any]) -> None:
        pol, model = self.policy, self.policy.model
        cache: PrefixKVCache = plan["cache"]
        steps, coeffs, mode = plan["steps"], plan["coeffs"], plan["mode"]
        attention_mask = s["attention_mask"]

        # 1. prefix: SigLIP + Gemma, valid tokens first (valid_first_order),
        #    keys/values straight into slots [0, P)
        valid = attention_mask.bool()
        valid_len = valid.sum(1)
        order = valid_first_order(valid)
        embeds = model.model.embed_prefix(
            s["input_ids"], s["pixel_values"], s["pixel_attention_mask"]
        )
        embeds = embeds.gather(1, order[:, :, None].expand_as(embeds))
        positions = (attention_mask.cumsum(-1) - 1).gather(1, order)
        prefix_len, buffer_len = cache.prefix_len, cache.buffer_len
        limits = {}
        if plan["varlen"]:
            limits = {varlen_attention.KWARG: prefix_limits(valid_len, prefix_len, buffer_len)}
        cache.begin_prefix()
        # the last Gemma layer only fills the cache: its output is dead work
        # (kv_only_layer.py); so is the returned last_hidden_state
        with last_layer_kv_only(model.model.vlm.language_model):
            model.model.vlm(
                inputs_embeds=embeds,
                # one row for every query, expanded (a view): keys [0, L_b)
                attention_mask=limit_mask(valid_len[:, None], buffer_len).expand(
                    -1, -1, prefix_len, -1
                ),
                position_ids=positions,
                cache=cache,
                use_cache=True,
                **limits,
            )

        # 2. the steps against the fixed prefix; suffix slots, mask, positions
        #    and limits built once
        suffix_len = pol.chunk_size + 1
        cache.begin_suffix(valid_len)
        mask = limit_mask(suffix_key_limits(valid_len, suffix_len), buffer_len)
        positions = valid_len[:, None] + torch.arange(suffix_len, device=valid_len.device)
        if plan["varlen"]:
            rows = self._suffix_rows_per_token()
            lim = suffix_limits(valid_len, suffix_len, buffer_len, rows_per_token=rows)
            total_q = valid_len.shape[0] * suffix_len * rows
            limits = {varlen_attention.KWARG: split_keys(lim, plan["key_splits"], total_q)}
        time_terms = self._time_terms(plan["time_embeds"])
        x = s["noise"]
        s["chain"][:, 0].copy_(x)
        logp = torch.zeros_like(s["logp"])
        region, noise_region = plan["region"], plan["noise_region"]
        chosen = s.get("chosen")
        fusion: ExpertFusion | None = plan.get("fusion")
        with contextlib.ExitStack() as stack:
            if fusion is not None:
                fusion.refresh()  # this chunk's weights, inside its graph
                stack.enter_context(fusion.installed())
            for i in range(steps):
                emb = self._action_time_embeds(s["state"], x, time_terms[i])
                hidden = model.model.dit(
                    inputs_embeds=emb,
                    attention_mask=mask,
                    position_ids=positions,
                    cache=cache,
                    use_cache=True,
                    **limits,
                ).last_hidden_state
                v = model.action_out_proj(hidden[:, -pol.chunk_size :]).to(torch.float32)
                x_ode = x + coeffs.dt * v  # flow.euler_step, as written there
                if mode == "ode":
                    x = x_ode
                else:
                    # 0-d float32 views of tables made before capture: the same
                    # values StepCoefficients.column gives the eager path
                    omt, drift = plan["one_minus_t"][i], plan["drift"][i]
                    std = plan["std"][i].expand(x.shape[0])[:, None, None]
                    mean = x_ode - drift * (x + omt * v)
                    x_sde = torch.where(noise_region, mean + std * s["eps"][i], x_ode)
                    if plan["stochastic"]:
                        step_logp = gaussian_log_prob(x_sde, mean, std, region)
                    else:
                        step_logp = torch.zeros_like(logp)
                    x, logp = take_step(i, x_ode, x_sde, step_logp, logp, chosen)
                s["chain"][:, i + 1].copy_(x)
        s["logp"].copy_(logp)

    # ---- entry point --------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.policy.device

    @torch.no_grad()
    @with_attention_backends  # the policy's kernels (attention.py), also when called directly
    def sample(
        self,
        batch: PolicyBatch,
        mode: str,
        generator: Generators,
        noise: torch.Tensor | None,
        level: float,
        steps: int,
    ) -> SampleOutput:
        pol = self.policy
        bsz, device = len(batch), batch.device
        shape = (bsz, pol.chunk_size, pol.max_action_dim)
        # RNG draws in the eager sampler's order: x_1, the chosen step, eps per step
        if noise is None:
            noise = draw_randn(shape, generator, device)
        x1 = noise.to(device=device, dtype=torch.float32)
        stochastic = mode == "sde" and level > 0.0
        one_step = stochastic and pol.config.sde_scheme == "one"
        chosen = draw_randint(steps, bsz, generator, device) if one_step else None
        eps = (
            torch.stack([draw_randn(shape, generator, device) for _ in range(steps)])
            if mode == "sde"
            else None
        )
        inputs = pol.model_inputs(batch)
        step_inputs: dict[str, torch.Tensor] = {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
            "pixel_values": inputs["pixel_values"],
            "pixel_attention_mask": inputs["pixel_attention_mask"],
            "state": inputs["state"],
            "noise": x1,
        }
        if eps is not None:
            step_inputs["eps"] = eps
        if chosen is not None:
            step_inputs["chosen"] = chosen
        padded = batch_bucket(bsz, self.batch_sizes) if self.bucket_batches else bsz
        if padded > bsz:
            rows = torch.cat(
                [
                    torch.arange(bsz, device=device),
                    torch.zeros(padded - bsz, dtype=torch.long, device=device),
                ]
            )
            step_inputs = {
                k: v.index_select(1 if k == "eps" else 0, rows) for k, v in step_inputs.items()
            }

        key = (
            mode,
            level,
            steps,
            one_step,
            pol.config.sde_noise_region,
            pol.logp_horizon,
            pol.logp_action_dims,
            *((k, tuple(v.shape), v.dtype) for k, v in step_inputs.items()),
        )
        fingerprint = self._params_fingerprint() if self.use_graphs else None
        if fingerprint != self._fingerprint:
            self._graphs.clear()
            self._fusion = None  # new parameters: new fused buffers for the new graphs
            self._fingerprint = fingerprint
        entry = self._graphs.get(key)
        if entry is None:
            # a first use per signature: with policy.compile it compiles every
            # layer for this bucket (tens of seconds): say so, it looks like a
            # hang otherwise
            t0 = time.perf_counter()
            entry = self._build(step_inputs, mode, level, steps, stochastic, padded, device)
            self._graphs[key] = entry
            log.info(
                "fast sampler: %s chunk at batch bucket %d%s%s ready in %.1f s",
                mode,
                padded,
                ", compiled layers" if self.compile_layers else "",
                ", CUDA graph" if entry.graph is not None else "",
                time.perf_counter() - t0,
            )
        s = entry.inputs
        if entry.graph is not None:
            for k, v in step_inputs.items():
                s[k].copy_(v, non_blocking=True)
            entry.graph.replay()
        else:
            s.update(step_inputs)
            self._run(entry)
        # the buffers are reused by the next chunk of this signature
        chain, logp = s["chain"][:bsz].clone(), s["logp"][:bsz].clone()
        return SampleOutput(
            actions=chain[:, -1],
            chain=chain,
            log_prob=logp.to(torch.float32),
            stochastic_step=chosen,
            mode=mode,
            noise_level=level if mode == "sde" else 0.0,
        )

    def _run(self, entry: _Graph) -> None:
        self._chunk(entry.inputs, entry.plan)

    def _build(
        self,
        step_inputs: dict[str, torch.Tensor],
        mode: str,
        level: float,
        steps: int,
        stochastic: bool,
        bsz: int,
        device: torch.device,
    ) -> _Graph:
        pol = self.policy
        vlm_cfg = pol.model.config.vlm_config.text_config
        dit_cfg = pol.model.config.dit_config
        if (
            vlm_cfg.num_hidden_layers != dit_cfg.num_hidden_layers
            or vlm_cfg.num_key_value_heads != dit_cfg.num_key_value_heads
            or vlm_cfg.head_dim != dit_cfg.head_dim
        ):
            raise ValueError("the fast sampler needs the VLM and expert KV layouts to match")
        prefix_len = step_inputs["input_ids"].shape[1]
        cache = PrefixKVCache(
            dit_cfg.num_hidden_layers,
            bsz,
            dit_cfg.num_key_value_heads,
            prefix_len,
            pol.chunk_size + 1,
            dit_cfg.head_dim,
            pol.dtype,
            device,
        )
        region = pol.scored_region(device)
        coeffs = StepCoefficients.build(steps, level if mode == "sde" else 0.0)
        if self.fuse_projections and self._fusion is None:
            self._fusion = ExpertFusion(pol.model.model.dit)
        plan = {
            "key_splits": self._key_splits(bsz, device, cache.buffer_len),
            "fusion": self._fusion,
            "cache": cache,
            "steps": steps,
            "mode": mode,
            "coeffs": coeffs,
            "stochastic": stochastic,
            "varlen": self.varlen,
            "region": region,
            "noise_region": region
            if pol.config.sde_noise_region == "scored"
            else torch.ones_like(region),
            "time_embeds": self._time_embed_table(steps, bsz, device),
            **{
                # float64 table -> float32, exactly as StepCoefficients.column
                name: torch.tensor(getattr(coeffs, name), dtype=torch.float64, device=device).to(
                    torch.float32
                )
                for name in ("one_minus_t", "drift", "std")
            },
        }
        s = {k: v.clone() for k, v in step_inputs.items()}
        s["chain"] = torch.zeros(
            bsz, steps + 1, pol.chunk_size, pol.max_action_dim, dtype=torch.float32, device=device
        )
        s["logp"] = torch.zeros(bsz, dtype=torch.float64, device=device)
        entry = _Graph(s, plan)
        if not self.use_graphs:
            return entry
        # warm up on a side stream (cuBLAS/cuDNN workspaces, lazy inits), then capture
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._chunk(s, plan)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._chunk(s, plan)
        except RuntimeError as exc:
            # e.g. a module (an adapter, a newer transformers) that syncs with
            # the host: keep the static-cache path, eagerly, and say so once
            self.capture_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "CUDA graph capture failed, running the static-cache sampler eagerly: %s", exc
            )
            torch.cuda.synchronize(device)
            return entry
        entry.graph = graph
        return entry
