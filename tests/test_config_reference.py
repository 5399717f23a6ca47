"""docs/configuration.md is generated from the attrs config classes."""

from __future__ import annotations

from pathlib import Path

import attrs

from ript_core.config import CONVERTER
from ript_core.config_reference import config_keys, field_comments, reference_markdown
from ript_core.rl.config import TrainConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _flat_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        # a section is a dict of an attrs class; env.options is a dict-valued key
        if isinstance(v, dict) and k != "options":
            out += _flat_keys(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


def test_the_page_lists_every_key_a_config_has_with_type_default_and_meaning():
    keys = list(config_keys(TrainConfig))
    assert sorted(k.key for k in keys) == sorted(_flat_keys(CONVERTER.unstructure(TrainConfig())))
    assert [k.key for k in keys if not k.meaning] == []  # every field carries its comment
    by_key = {k.key: k for k in keys}
    assert by_key["env.max_steps"].type == "int | None"
    assert by_key["env.max_steps"].default == "null"
    assert by_key["policy.sde_scheme"].type == "all | one"
    assert by_key["optim.betas"].default == "[0.9, 0.999]"
    assert by_key["ript.group_size"].meaning == "K rollouts per context"


def test_the_committed_page_is_up_to_date():
    assert DOC.read_text() == reference_markdown(), (
        "docs/configuration.md is stale: python -m ript_core.config_reference "
        "> docs/configuration.md"
    )


@attrs.define
class _Sample:
    # --- a group header, not a field's comment ------
    plain: int = 1
    # the block above a field
    # spans lines
    blocked: str = "a#b"  # and its own comment
    trailing: float = 0.5  # only its own
    nested: list[int] = attrs.Factory(
        lambda: [1]  # inside the call: not the field's comment
    )


def test_field_comments_join_the_block_above_and_the_trailing_comment():
    assert field_comments(_Sample) == {
        "plain": "",
        "blocked": "the block above a field spans lines and its own comment",
        "trailing": "only its own",
        "nested": "",
    }
