"""What the scripts in bench/ share, importable and tested: timing and run
metadata (:mod:`.harness`), the PI0 pieces every GPU bench needs
(:mod:`.pi0`), and the single-call GPU policy bench (:mod:`.gpu_policy`)."""
