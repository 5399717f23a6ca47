"""An independent float64 PI0 inference in plain torch, written from openpi's
published JAX model definition (``src/openpi/models/pi0.py``, ``gemma.py``,
``siglip.py`` @ 15a9616), for the parity test. Test-only.

Nothing here imports transformers or ript_core's model code. The weights are
taken from a transformers state dict, but first converted into openpi's own
parameter layouts (flax kernels ``[in, out]``, Gemma einsum tensors
``q_einsum [N, D, H]``, ``kv_einsum [2, K, D, H]``, ``attn_vec_einsum [N, H, D]``,
``gating_einsum [2, D, F]``, conv kernel ``[ph, pw, c_in, width]``) so that a
layout mistake in either direction shows up as a mismatch, not as a shared bug.

The structure follows openpi rather than transformers on purpose:

- prefix = SigLIP tokens of every camera slot (mask = the camera's mask) then
  the text embedding scaled by ``sqrt(width)`` (image tokens are not scaled);
- suffix = one state token (``ar=True``) then the action tokens
  ``mlp_out(swish(mlp_in([action_in(x_t), posemb_sincos(t)])))`` (first ``ar=True``);
- big_vision's ``make_attn_mask`` over the concatenated sequence, positions
  ``cumsum(mask) - 1``, one *mixture* transformer in which the VLM weights
  process the prefix tokens and the expert weights the suffix tokens, with
  attention over both, masked logits set to ``big_neg`` (not ``-inf``);
- no KV cache: every denoising step runs the full prefix + suffix sequence.
  openpi caches the prefix; because the prefix never attends to the suffix the
  two are the same function, so this also checks the cache handling of the
  implementation under test (parity checklist B12);
- Euler from ``t = 1`` with ``time += dt`` while ``time >= -dt/2`` (openpi's loop).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs
import torch

F64 = torch.float64
BIG_NEG = -2.3819763e38  # openpi gemma.py: the masked-logit value


@attrs.frozen
class RefConfig:
    """The shapes the reference needs, read off the transformers config."""

    vlm_width: int
    expert_width: int
    depth: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vit_width: int
    vit_depth: int
    vit_heads: int
    patch: int
    chunk: int
    action_dim: int
    min_period: float = 4e-3
    max_period: float = 4.0
    rope_base: float = 10_000.0
    eps: float = 1e-6

    @classmethod
    def from_pi0_config(cls, cfg) -> RefConfig:  # transformers PI0Config
        text, vis, dit = cfg.vlm_config.text_config, cfg.vlm_config.vision_config, cfg.dit_config
        return cls(
            vlm_width=text.hidden_size,
            expert_width=dit.hidden_size,
            depth=text.num_hidden_layers,
            num_heads=text.num_attention_heads,
            num_kv_heads=text.num_key_value_heads,
            head_dim=text.head_dim,
            vit_width=vis.hidden_size,
            vit_depth=vis.num_hidden_layers,
            vit_heads=vis.num_attention_heads,
            patch=vis.patch_size,
            chunk=cfg.chunk_size,
            action_dim=cfg.max_action_dim,
            min_period=float(cfg.min_period),
            max_period=float(cfg.max_period),
        )


# ---- weights: transformers state dict -> openpi layouts --------------------------


def convert_weights(sd: Mapping[str, torch.Tensor], cfg: RefConfig) -> dict[str, torch.Tensor]:
    """transformers PI0 keys -> openpi-named, openpi-shaped float64 params."""

    def w(key: str) -> torch.Tensor:
        return sd[key].detach().to(F64).clone()

    def kernel(key: str) -> torch.Tensor:  # torch Linear [out, in] -> flax [in, out]
        return w(key).T.contiguous()

    n, k, h = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    p: dict[str, torch.Tensor] = {}
    # SigLIP
    v = "model.vlm.vision_tower."
    conv = w(v + "embeddings.patch_embedding.weight")  # [width, c_in, ph, pw]
    p["img/embedding/kernel"] = conv.permute(2, 3, 1, 0).contiguous()  # [ph, pw, c_in, width]
    p["img/embedding/bias"] = w(v + "embeddings.patch_embedding.bias")
    p["img/pos_embedding"] = w(v + "embeddings.position_embedding.weight")[None]
    vh = cfg.vit_width // cfg.vit_heads
    for i in range(cfg.vit_depth):
        src, dst = f"{v}encoder.layers.{i}.", f"img/block{i}/"
        for j, ln in enumerate(("layer_norm1", "layer_norm2")):
            p[f"{dst}LayerNorm_{j}/scale"] = w(src + ln + ".weight")
            p[f"{dst}LayerNorm_{j}/bias"] = w(src + ln + ".bias")
        for name, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
            p[f"{dst}mha/{name}/kernel"] = kernel(f"{src}self_attn.{proj}.weight").reshape(
                cfg.vit_width, cfg.vit_heads, vh
            )
            p[f"{dst}mha/{name}/bias"] = w(f"{src}self_attn.{proj}.bias").reshape(cfg.vit_heads, vh)
        p[f"{dst}mha/out/kernel"] = kernel(f"{src}self_attn.out_proj.weight").reshape(
            cfg.vit_heads, vh, cfg.vit_width
        )
        p[f"{dst}mha/out/bias"] = w(f"{src}self_attn.out_proj.bias")
        p[f"{dst}mlp/Dense_0/kernel"] = kernel(src + "mlp.fc1.weight")
        p[f"{dst}mlp/Dense_0/bias"] = w(src + "mlp.fc1.bias")
        p[f"{dst}mlp/Dense_1/kernel"] = kernel(src + "mlp.fc2.weight")
        p[f"{dst}mlp/Dense_1/bias"] = w(src + "mlp.fc2.bias")
    p["img/encoder_norm/scale"] = w(v + "post_layernorm.weight")
    p["img/encoder_norm/bias"] = w(v + "post_layernorm.bias")
    p["img/head/kernel"] = kernel("model.vlm.multi_modal_projector.linear.weight")
    p["img/head/bias"] = w("model.vlm.multi_modal_projector.linear.bias")
    # Gemma mixture: expert 0 = PaliGemma's LM, expert 1 = the action expert
    p["llm/embedder/input_embedding"] = w("model.vlm.language_model.embed_tokens.weight")
    for e, prefix, width in (
        (0, "model.vlm.language_model.", cfg.vlm_width),
        (1, "model.dit.", cfg.expert_width),
    ):
        for i in range(cfg.depth):
            src, dst = f"{prefix}layers.{i}.", f"llm/layer{i}/e{e}/"
            p[dst + "pre_attention_norm/scale"] = w(src + "input_layernorm.weight")
            p[dst + "pre_ffw_norm/scale"] = w(src + "post_attention_layernorm.weight")
            q = w(src + "self_attn.q_proj.weight").reshape(n, h, width)  # [N*H, D]
            p[dst + "q_einsum"] = q.permute(0, 2, 1).contiguous()  # [N, D, H]
            kk = w(src + "self_attn.k_proj.weight").reshape(k, h, width).permute(0, 2, 1)
            vv = w(src + "self_attn.v_proj.weight").reshape(k, h, width).permute(0, 2, 1)
            p[dst + "kv_einsum"] = torch.stack([kk, vv]).contiguous()  # [2, K, D, H]
            o = w(src + "self_attn.o_proj.weight")  # [D, N*H]
            p[dst + "attn_vec_einsum"] = o.T.reshape(n, h, width).contiguous()  # [N, H, D]
            gate = kernel(src + "mlp.gate_proj.weight")
            up = kernel(src + "mlp.up_proj.weight")
            p[dst + "gating_einsum"] = torch.stack([gate, up])  # [2, D, F]
            p[dst + "linear"] = kernel(src + "mlp.down_proj.weight")  # [F, D]
        p[f"llm/final_norm/e{e}/scale"] = w(prefix + "norm.weight")
    # PI0 heads
    for name, src in (
        ("state_proj", "embed_action_time.state_proj"),
        ("action_in_proj", "embed_action_time.action_in_proj"),
        ("action_time_mlp_in", "embed_action_time.action_time_mlp_in"),
        ("action_time_mlp_out", "embed_action_time.action_time_mlp_out"),
        ("action_out_proj", "action_out_proj"),
    ):
        p[f"{name}/kernel"] = kernel(src + ".weight")
        p[f"{name}/bias"] = w(src + ".bias")
    return p


# ---- building blocks (openpi semantics) --------------------------------------------


def dense(p: Mapping[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ p[f"{name}/kernel"] + p[f"{name}/bias"]


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """flax ``nn.gelu`` (``approximate=True`` by default)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def layer_norm(
    x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * scale + bias


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """Gemma: ``x * rsqrt(mean(x^2) + eps) * (1 + scale)``."""
    var = (x * x).mean(-1, keepdim=True)
    return x / torch.sqrt(var + eps) * (1.0 + scale)


def siglip(p: Mapping[str, torch.Tensor], cfg: RefConfig, images: torch.Tensor) -> torch.Tensor:
    """``images [B, H, W, 3]`` in [-1, 1] -> ``[B, n_patches, vlm_width]`` (pool "none" + head)."""
    b, hh, ww, c = images.shape
    ps = cfg.patch
    gh, gw = hh // ps, ww // ps
    # VALID conv with stride = kernel size == a matmul over non-overlapping patches
    patches = images[:, : gh * ps, : gw * ps].reshape(b, gh, ps, gw, ps, c)
    patches = patches.permute(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, ps * ps * c)
    x = patches @ p["img/embedding/kernel"].reshape(ps * ps * c, -1) + p["img/embedding/bias"]
    x = x + p["img/pos_embedding"]
    nh = cfg.vit_heads
    hd = cfg.vit_width // nh
    for i in range(cfg.vit_depth):
        pre = f"img/block{i}/"
        y = layer_norm(x, p[pre + "LayerNorm_0/scale"], p[pre + "LayerNorm_0/bias"], cfg.eps)
        q, k, v = (
            torch.einsum("bld,dnh->blnh", y, p[f"{pre}mha/{n}/kernel"]) + p[f"{pre}mha/{n}/bias"]
            for n in ("query", "key", "value")
        )
        q = q / math.sqrt(hd)  # flax dot_product_attention scales the query
        probs = torch.softmax(torch.einsum("bqnh,bknh->bnqk", q, k), dim=-1)
        att = torch.einsum("bnqk,bknh->bqnh", probs, v)
        y = torch.einsum("bqnh,nhd->bqd", att, p[pre + "mha/out/kernel"]) + p[pre + "mha/out/bias"]
        x = x + y
        y = layer_norm(x, p[pre + "LayerNorm_1/scale"], p[pre + "LayerNorm_1/bias"], cfg.eps)
        y = dense(p, pre + "mlp/Dense_1", gelu_tanh(dense(p, pre + "mlp/Dense_0", y)))
        x = x + y
    x = layer_norm(x, p["img/encoder_norm/scale"], p["img/encoder_norm/bias"], cfg.eps)
    return dense(p, "img/head", x)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """openpi ``_apply_rope``: ``x [B, L, N, H]``, split halves, positions ``[B, L]``."""
    d = x.shape[-1]
    freq_exponents = (2.0 / d) * torch.arange(d // 2, dtype=F64)
    timescale = base**freq_exponents
    radians = positions.to(F64)[..., None] / timescale
    radians = radians[..., None, :]
    sin, cos = torch.sin(radians), torch.cos(radians)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def make_attn_mask(input_mask: torch.Tensor, ar_mask: torch.Tensor) -> torch.Tensor:
    """big_vision: a token attends to valid tokens whose cumulative ``ar`` is <= its own."""
    ar = ar_mask.to(torch.long).expand_as(input_mask)
    cumsum = torch.cumsum(ar, dim=1)
    attn = cumsum[:, None, :] <= cumsum[:, :, None]
    valid = input_mask[:, None, :] & input_mask[:, :, None]
    return attn & valid


def mixture_transformer(
    p: Mapping[str, torch.Tensor],
    cfg: RefConfig,
    xs: list[torch.Tensor],
    positions: torch.Tensor,
    mask: torch.Tensor,
    hidden: dict[str, torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """openpi ``gemma.Module``: expert ``e`` processes ``xs[e]``; attention is joint."""
    n, kh, h = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    lengths = [x.shape[1] for x in xs]
    for i in range(cfg.depth):
        qs, ks, vs = [], [], []
        for e, x in enumerate(xs):
            pre = f"llm/layer{i}/e{e}/"
            y = rms_norm(x, p[pre + "pre_attention_norm/scale"], cfg.eps)
            qs.append(torch.einsum("btd,ndh->btnh", y, p[pre + "q_einsum"]))
            kv = torch.einsum("bsd,ckdh->cbskh", y, p[pre + "kv_einsum"])
            ks.append(kv[0])
            vs.append(kv[1])
        q, k, v = torch.cat(qs, 1), torch.cat(ks, 1), torch.cat(vs, 1)
        q = apply_rope(q, positions, cfg.rope_base) * h**-0.5
        k = apply_rope(k, positions, cfg.rope_base)
        b, t = q.shape[:2]
        q = q.reshape(b, t, kh, n // kh, h)
        logits = torch.einsum("btkgh,bskh->bkgts", q, k)
        logits = torch.where(mask[:, None, None], logits, torch.full_like(logits, BIG_NEG))
        probs = torch.softmax(logits, dim=-1)
        enc = torch.einsum("bkgts,bskh->btkgh", probs, v).reshape(b, t, n, h)
        out, start = [], 0
        for e, x in enumerate(xs):
            pre = f"llm/layer{i}/e{e}/"
            seg = enc[:, start : start + lengths[e]]
            start += lengths[e]
            x = x + torch.einsum("btnh,nhd->btd", seg, p[pre + "attn_vec_einsum"])
            y = rms_norm(x, p[pre + "pre_ffw_norm/scale"], cfg.eps)
            gating = p[pre + "gating_einsum"]
            y = (gelu_tanh(y @ gating[0]) * (y @ gating[1])) @ p[pre + "linear"]
            out.append(x + y)
        xs = out
        if hidden is not None:
            for e, x in enumerate(xs):
                hidden[f"layer{i}/e{e}"] = x
    return [rms_norm(x, p[f"llm/final_norm/e{e}/scale"], cfg.eps) for e, x in enumerate(xs)]


def text_embed_scale(width: int) -> float:
    """openpi ``Embedder.encode``: token embeddings times ``sqrt(width)``."""
    return math.sqrt(width)


def posemb_sincos(t: torch.Tensor, dim: int, min_period: float, max_period: float) -> torch.Tensor:
    fraction = torch.linspace(0.0, 1.0, dim // 2, dtype=F64)
    period = min_period * (max_period / min_period) ** fraction
    arg = t.to(F64)[:, None] * (1.0 / period * 2 * math.pi)[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


# ---- PI0 ---------------------------------------------------------------------------


class ReferencePI0:
    """openpi ``Pi0`` inference on float64 tensors.

    Inputs follow openpi's ``Observation``: ``images [B, n_cam, H, W, 3]`` in
    [-1, 1], ``image_masks [B, n_cam]`` bool, ``tokens``/``token_masks``
    ``[B, L]``, ``state [B, action_dim]`` (already normalised and padded).
    """

    def __init__(self, params: Mapping[str, torch.Tensor], cfg: RefConfig) -> None:
        self.p = dict(params)
        self.cfg = cfg
        self.trace: dict[str, torch.Tensor] = {}

    def embed_prefix(self, images, image_masks, tokens, token_masks):
        embs, masks = [], []
        for c in range(images.shape[1]):
            img_tokens = siglip(self.p, self.cfg, images[:, c].to(F64))
            embs.append(img_tokens)
            masks.append(image_masks[:, c : c + 1].expand(-1, img_tokens.shape[1]))
        table = self.p["llm/embedder/input_embedding"]
        embs.append(table[tokens] * text_embed_scale(self.cfg.vlm_width))
        masks.append(token_masks)
        emb, mask = torch.cat(embs, 1), torch.cat(masks, 1)
        ar = torch.zeros(emb.shape[1], dtype=torch.bool)  # prefix-LM: bidirectional
        return emb, mask, ar

    def embed_suffix(self, state, x_t, t):
        b = state.shape[0]
        state_tok = dense(self.p, "state_proj", state.to(F64))[:, None]
        actions = dense(self.p, "action_in_proj", x_t)
        time_emb = posemb_sincos(t, self.cfg.expert_width, self.cfg.min_period, self.cfg.max_period)
        time_tok = time_emb[:, None].expand(-1, self.cfg.chunk, -1)
        h = dense(self.p, "action_time_mlp_in", torch.cat([actions, time_tok], -1))
        action_tok = dense(self.p, "action_time_mlp_out", swish(h))
        emb = torch.cat([state_tok, action_tok], 1)
        mask = torch.ones(b, emb.shape[1], dtype=torch.bool)
        ar = torch.tensor([True, True] + [False] * (self.cfg.chunk - 1))
        return emb, mask, ar

    def velocity(self, prefix, state, x_t, t, step: int | None = None):
        p_emb, p_mask, p_ar = prefix
        s_emb, s_mask, s_ar = self.embed_suffix(state, x_t, t)
        input_mask = torch.cat([p_mask, s_mask], 1)
        mask = make_attn_mask(input_mask, torch.cat([p_ar, s_ar])[None])
        positions = torch.cumsum(input_mask.to(torch.long), 1) - 1
        hidden: dict[str, torch.Tensor] = {}
        _, suffix_out = mixture_transformer(
            self.p, self.cfg, [p_emb, s_emb], positions, mask, hidden
        )
        v = dense(self.p, "action_out_proj", suffix_out[:, -self.cfg.chunk :])
        if step is not None:
            self.trace[f"step{step}/suffix_emb"] = s_emb
            for name, x in hidden.items():
                # expert 0 sees only the prefix: the same at every step, keep it once
                if name.endswith("e1"):
                    self.trace[f"step{step}/{name}"] = x
                elif step == 0:
                    self.trace[f"prefix/{name}"] = x
            self.trace[f"step{step}/t"] = t
            self.trace[f"step{step}/x_t"] = x_t
            self.trace[f"step{step}/v_t"] = v
        return v

    def sample_actions(self, images, image_masks, tokens, token_masks, state, noise, num_steps):
        self.trace = {}
        prefix = self.embed_prefix(images, image_masks, tokens, token_masks)
        self.trace["prefix_emb"] = prefix[0]
        dt = -1.0 / num_steps
        x_t, time, step = noise.to(F64), 1.0, 0
        b = x_t.shape[0]
        while time >= -dt / 2:  # openpi's loop, robust to float error
            t = torch.full((b,), time, dtype=F64)
            v = self.velocity(prefix, state, x_t, t, step)
            x_t, time, step = x_t + dt * v, time + dt, step + 1
        self.trace["actions"] = x_t
        return x_t
