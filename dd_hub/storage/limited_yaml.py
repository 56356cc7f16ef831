"""YAML from outside (cards, recipes) parsed under limits: PyYAML's safe loader without aliases (no "billion
laughs"), at most :data:`MAX_DEPTH` levels deep and :data:`MAX_NODES` nodes."""
from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 16
MAX_NODES = 20_000


class YAMLLimitError(ValueError):
    """YAML that breaks a limit (or does not parse); its message is one line."""


class _LimitedLoader(yaml.SafeLoader):
    def __init__(self, stream, max_depth: int, max_nodes: int) -> None:
        super().__init__(stream)
        self.depth = self.nodes = 0
        self.max_depth, self.max_nodes = max_depth, max_nodes

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise YAMLLimitError("its YAML uses aliases, which are refused (no 'billion laughs')")
        self.depth += 1
        self.nodes += 1
        if self.depth > self.max_depth or self.nodes > self.max_nodes:
            raise YAMLLimitError(f"its YAML is deeper than {self.max_depth} or larger than {self.max_nodes} nodes")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(text: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """The data of a YAML document, or :class:`YAMLLimitError` with a one-line reason."""
    loader = _LimitedLoader(text, max_depth, max_nodes)
    try:
        return loader.get_single_data()
    except YAMLLimitError:
        raise
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise YAMLLimitError(f"its YAML cannot be read ({(lines[0] if lines else type(exc).__name__)[:200]})") \
            from None
    finally:
        loader.dispose()
