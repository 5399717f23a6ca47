"""The fast sampling path: a static-cache sampler captured in CUDA graphs and
the kernels it installs around transformers' modules (fused projections and
norms, key-limited FlashAttention, compiled layers). The eager path in
:mod:`ript_core.policy.sampling` stays the reference it must match."""
