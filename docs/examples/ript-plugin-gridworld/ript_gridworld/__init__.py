"""Example ript-core backend plugin (see docs/writing-a-plugin.md)."""
