"""Stage recorder and diff: find where two PI0 pipelines start to disagree.

``record_inference`` runs one observation through the whole pipeline and
records every stage (``ript record``); ``diff_recordings`` compares two
recordings stage by stage, optionally through a :class:`StageMapping` for a
recording made by another implementation (``ript diff``). See
docs/debugging.md.
"""

from ript_core.debug.diff import DiffReport, StageDiff, diff_recordings
from ript_core.debug.mapping import StageMapping, StageRule
from ript_core.debug.recorder import make_noise, record_inference
from ript_core.debug.recording import Recording

__all__ = [
    "DiffReport",
    "Recording",
    "StageDiff",
    "StageMapping",
    "StageRule",
    "diff_recordings",
    "make_noise",
    "record_inference",
]
