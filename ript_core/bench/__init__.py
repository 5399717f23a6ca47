"""What the scripts in bench/ share, importable and tested: timing and run
metadata (:mod:`.harness`), the PI0 pieces every GPU bench needs
(:mod:`.pi0`), and the single-call GPU policy bench (:mod:`.gpu_policy`, which
runs its sections :mod:`.gpu_sampling`, :mod:`.gpu_update` and :mod:`.gpu_memory`)."""
