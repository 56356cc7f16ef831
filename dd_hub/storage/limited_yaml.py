"""YAML from outside (cards, recipes) parsed under limits: safe types only, no alias (no "billion laughs"), at most
:data:`MAX_DEPTH` levels deep and :data:`MAX_NODES` nodes. The events are read first by libyaml's parser (which
keeps its own stack, so no nesting reaches Python's) and the document is refused before anything is built; then
the C loader builds it."""
from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 16
MAX_NODES = 20_000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)    # libyaml's C loader when PyYAML was built with it
_OPENS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSES = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class YAMLLimitError(ValueError):
    """YAML that breaks a limit (or does not parse); its message is one line."""


def load_yaml(text: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """The data of a YAML document, or :class:`YAMLLimitError` with a one-line reason."""
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent):
                raise YAMLLimitError("its YAML uses aliases, which are refused (no 'billion laughs')")
            if isinstance(event, _CLOSES):
                depth -= 1
                continue
            if not isinstance(event, (yaml.ScalarEvent, *_OPENS)):
                continue
            nodes += 1
            if depth + 1 > max_depth or nodes > max_nodes:
                raise YAMLLimitError(f"its YAML is deeper than {max_depth} or larger than {max_nodes} nodes")
            depth += isinstance(event, _OPENS)
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader; aliases refused above)
    except YAMLLimitError:
        raise
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise YAMLLimitError(f"its YAML cannot be read ({(lines[0] if lines else type(exc).__name__)[:200]})") \
            from None
