"""SAPIEN renders through Vulkan: find a driver, and explain when there is none.

On a machine without a GPU the driver is Mesa's software rasteriser
*lavapipe*, version 24.3 or newer (Debian 12's Mesa 22 lavapipe is too old
for SAPIEN 3). ``.ci/setup-vulkan`` installs it from bookworm-backports.
SAPIEN brings its own Vulkan *loader*; the *driver* (an ICD: a JSON manifest
pointing at the driver library) must come from the system.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator

LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json"
# The directories the Vulkan loader searches when VK_ICD_FILENAMES is unset.
ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
INSTALL_HINT = (
    "install a Vulkan driver: without a GPU, Mesa's lavapipe >= 24.3 (Debian 12: "
    "`sudo .ci/setup-vulkan` in the ript-core repo, i.e. `apt-get install -t bookworm-backports "
    f"mesa-vulkan-drivers`), then `export VK_ICD_FILENAMES={LAVAPIPE_ICD}`; with an NVIDIA GPU, "
    "the driver's Vulkan ICD (nvidia_icd.json)"
)
# Fragments of the errors SAPIEN raises when it cannot create a Vulkan
# instance or finds no physical device.
_VULKAN_ERROR_MARKERS = ("vk::", "vulkan", "ErrorIncompatibleDriver", "ErrorInitializationFailed")


class VulkanUnavailableError(RuntimeError):
    """SAPIEN found no usable Vulkan device (names the fix)."""


def _listed_icds() -> list[str] | None:
    """The ICDs named by the environment, or None when it names none."""
    for var in ("VK_DRIVER_FILES", "VK_ICD_FILENAMES"):  # the loader prefers the first
        value = os.environ.get(var, "").strip()
        if value:
            return [p for p in value.split(os.pathsep) if p]
    return None


def vulkan_icds() -> list[str]:
    """The Vulkan driver manifests the loader will try, existing files only."""
    listed = _listed_icds()
    if listed is not None:
        return [p for p in listed if os.path.isfile(p)]
    return sorted(p for d in ICD_DIRS for p in glob.glob(os.path.join(d, "*.json")))


def missing_driver_reason() -> str | None:
    """Why SAPIEN cannot render here (file checks only, no Vulkan instance), or None."""
    listed = _listed_icds()
    if listed is not None and not any(os.path.isfile(p) for p in listed):
        return f"the Vulkan driver manifest(s) {listed} named by VK_ICD_FILENAMES do not exist"
    if not vulkan_icds():
        return f"no Vulkan driver (no ICD manifest in {', '.join(ICD_DIRS)})"
    return None


@contextlib.contextmanager
def translate_vulkan_errors() -> Iterator[None]:
    """Turn SAPIEN's bare Vulkan failure (``vk::createInstanceUnique:
    ErrorIncompatibleDriver``) into an error that names the driver and the fix."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        if not any(m.lower() in text.lower() for m in _VULKAN_ERROR_MARKERS):
            raise
        icds = vulkan_icds()
        raise VulkanUnavailableError(
            f"SAPIEN (ManiSkill3's renderer) found no usable Vulkan device: {text}. "
            f"Vulkan drivers tried: {icds or 'none'}. Fix: {INSTALL_HINT}"
        ) from exc
