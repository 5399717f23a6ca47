"""Stage-name mapping between two recordings made by different pipelines.

A mapping file (YAML) says which stage of recording B corresponds to a
stage of recording A, how to bring B's array into A's layout, which stages
to skip and which need their own tolerance::

    stages:
      # A's name: B's name
      input/token_ids: tokenized_prompt
      prefix/embeds: prefix_tokens
      # {placeholders} match one path segment part in A's name and are
      # substituted into B's name
      denoise/step_{k}/velocity: v_t/{k}
      # a dict when B's layout differs: axes permutation applied to B
      input/images: {name: images_nhwc, transpose: [0, 1, 4, 2, 3]}
    ignore:            # A's stages not to compare (glob patterns)
      - vision/*
    tolerances:        # per-stage (glob) overrides of --atol/--rtol
      prefix/embeds: {atol: 1.0e-4}

Placeholder values match digits and letters up to the next ``/`` or ``_``
boundary given by the pattern itself (``step_{k}`` matches ``step_03``
with ``k = "03"``); use ``{k:int}`` to re-format as a plain integer
(``03`` -> ``3``) for pipelines that do not zero-pad.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

_FIELD = re.compile(r"\{(\w+)(?::(int))?\}")


@attrs.frozen
class StageRule:
    """One ``stages:`` entry: A's pattern -> B's name template (+ layout)."""

    pattern: str
    target: str
    transpose: tuple[int, ...] | None = None

    @property
    def regex(self) -> re.Pattern[str]:
        parts, pos = [], 0
        for m in _FIELD.finditer(self.pattern):
            parts.append(re.escape(self.pattern[pos : m.start()]))
            parts.append(f"(?P<{m.group(1)}>[^/]+?)")
            pos = m.end()
        parts.append(re.escape(self.pattern[pos:]))
        return re.compile("^" + "".join(parts) + "$")

    def apply(self, name: str) -> str | None:
        m = self.regex.match(name)
        if m is None:
            return None
        values = m.groupdict()
        casts = {f.group(1): f.group(2) for f in _FIELD.finditer(self.pattern)}

        def fill(fm: re.Match[str]) -> str:
            key = fm.group(1)
            if key not in values:
                raise ValueError(
                    f"mapping target {self.target!r} uses {{{key}}}, which its pattern "
                    f"{self.pattern!r} does not define"
                )
            value = values[key]
            cast = fm.group(2) or casts.get(key)
            return str(int(value)) if cast == "int" and value.isdigit() else value

        return _FIELD.sub(fill, self.target)


@attrs.frozen
class StageMapping:
    """How recording B's stages line up with recording A's."""

    rules: tuple[StageRule, ...] = ()
    ignore: tuple[str, ...] = ()
    tolerances: tuple[tuple[str, float | None, float | None], ...] = ()

    @classmethod
    def identity(cls) -> StageMapping:
        return cls()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "mapping") -> StageMapping:
        unknown = set(data) - {"stages", "ignore", "tolerances"}
        if unknown:
            raise ValueError(
                f"{source}: unknown top-level key(s) {sorted(unknown)}; "
                "allowed: stages, ignore, tolerances"
            )
        rules = []
        for pattern, target in (data.get("stages") or {}).items():
            if isinstance(target, str):
                rules.append(StageRule(str(pattern), target))
            elif isinstance(target, Mapping) and "name" in target:
                extra = set(target) - {"name", "transpose"}
                if extra:
                    raise ValueError(
                        f"{source}: stage {pattern!r} has unknown key(s) {sorted(extra)}; "
                        "allowed: name, transpose"
                    )
                tr = target.get("transpose")
                rules.append(
                    StageRule(
                        str(pattern), str(target["name"]), tuple(int(a) for a in tr) if tr else None
                    )
                )
            else:
                raise ValueError(
                    f"{source}: stage {pattern!r} must map to a name or to "
                    f"{{name: ..., transpose: [...]}}, got {target!r}"
                )
            defined = {m.group(1) for m in _FIELD.finditer(rules[-1].pattern)}
            used = {m.group(1) for m in _FIELD.finditer(rules[-1].target)}
            if used - defined:
                raise ValueError(
                    f"{source}: stage {pattern!r} -> {rules[-1].target!r} uses placeholder(s) "
                    f"{sorted(used - defined)} that the left-hand side does not define"
                )
        tolerances = []
        for pattern, tol in (data.get("tolerances") or {}).items():
            if not isinstance(tol, Mapping) or not set(tol) <= {"atol", "rtol"}:
                raise ValueError(
                    f"{source}: tolerance for {pattern!r} must be a dict with atol and/or rtol, "
                    f"got {tol!r}"
                )
            tolerances.append(
                (
                    str(pattern),
                    float(tol["atol"]) if "atol" in tol else None,
                    float(tol["rtol"]) if "rtol" in tol else None,
                )
            )
        ignore = data.get("ignore") or []
        if isinstance(ignore, str):
            ignore = [ignore]
        return cls(tuple(rules), tuple(str(i) for i in ignore), tuple(tolerances))

    @classmethod
    def load(cls, path: str | Path) -> StageMapping:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"mapping file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, Mapping):
            raise ValueError(
                f"mapping file {path} must hold a YAML mapping with stages/ignore/tolerances"
            )
        return cls.from_dict(data, source=str(path))

    def is_ignored(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pat) for pat in self.ignore)

    def target(self, name: str) -> tuple[str, tuple[int, ...] | None]:
        """B's stage name for A's ``name`` (first matching rule; else the same name)."""
        for rule in self.rules:
            mapped = rule.apply(name)
            if mapped is not None:
                return mapped, rule.transpose
        return name, None

    def tolerance(self, name: str, atol: float, rtol: float) -> tuple[float, float]:
        for pattern, a, r in self.tolerances:
            if fnmatch.fnmatchcase(name, pattern):
                return (atol if a is None else a), (rtol if r is None else r)
        return atol, rtol
