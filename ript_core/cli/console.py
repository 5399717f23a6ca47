"""The one rich console every command prints through (tests resize it)."""

from __future__ import annotations

from rich.console import Console

console = Console()
