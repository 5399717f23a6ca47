"""Run in openpi's environment: one observation recorded by `ript record`
through openpi's own Policy.infer, dumped for `ript diff` (docs/debugging.md).

    uv run python dump_openpi.py RECORDING_DIR CHECKPOINT_DIR pi0_libero out.npz
"""

import copy
import json
import sys
from pathlib import Path

import numpy as np
from openpi.policies import policy_config
from openpi.training import config as _config
from openpi_client import image_tools
from safetensors.numpy import load_file

rec_dir, ckpt, config_name, out = sys.argv[1:5]
ours = load_file(f"{rec_dir}/stages.safetensors")
meta = json.loads(Path(rec_dir, "meta.json").read_text())
policy = policy_config.create_trained_policy(_config.get_config(config_name), ckpt)

# what openpi's LIBERO client sends: rotated frames resized with PIL, float64 state
element = {
    "observation/image": image_tools.resize_with_pad(ours["adapted/images/base_0_rgb"], 224, 224),
    "observation/wrist_image": image_tools.resize_with_pad(
        ours["adapted/images/left_wrist_0_rgb"], 224, 224
    ),
    "observation/state": ours["adapted/state"].astype(np.float64),
    "prompt": meta["prompt"],
}
inputs = policy._input_transform(copy.deepcopy(element))  # what the model is given
result = policy.infer(element, noise=ours["denoise/noise"][0])  # the same float32 x_1

flat = {"noise": ours["denoise/noise"][0], "outputs/actions": np.asarray(result["actions"])}
for key, value in inputs.items():
    for sub, leaf in value.items() if isinstance(value, dict) else [(None, value)]:
        flat[f"inputs/{key}" + (f"/{sub}" if sub else "")] = np.asarray(leaf)
np.savez(out, **flat)
print(f"wrote {len(flat)} arrays to {out}")
