"""Read configuration YAML with limits: no input can make the loader hang, eat memory or crash.

A configuration is a few kilobytes of a few hundred values. The limits below are far above any
real one and far below what hurts: a file over `MAX_CONFIG_BYTES` is refused before it is parsed,
nesting deeper than `MAX_NESTING` stops the parser before Python's recursion limit, and a
document whose aliases would expand past `MAX_EXPANDED_NODES` values (a "billion laughs" alias
bomb: 1 KB that expands to gigabytes) or that refers to itself is refused before anything copies
it. A key written twice in one mapping is an error (YAML would silently keep the last one).
Error messages give the line and column, never the text around them: the file may not be a
configuration at all, and its lines are nobody's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tip_ray.errors import TipRayError

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: the largest pipeline in the project is under 4 KB
MAX_NESTING = 64  # mappings and lists inside one another
MAX_EXPANDED_NODES = 100_000  # values after every alias is expanded
_MERGE_TAG = "tag:yaml.org,2002:merge"


class ConfigError(TipRayError, ValueError):
    """A configuration problem; the message names the file, the key path and what to change."""


def read_config_text(path: Path) -> str:
    """The file's text, refused when it is too large to be a configuration or not UTF-8."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)  # never more: /dev/zero ends here too
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB, far more than any configuration; "
            f"is this the right file?"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader (never constructs Python objects) that stops at `MAX_NESTING` and refuses
    duplicate keys."""

    def __init__(self, text: str, source: str):
        super().__init__(text)
        self.source = source
        self.nesting = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(
                    f"{self.source}: line {line}: nested more than {MAX_NESTING} levels deep; "
                    f"no configuration looks like that"
                )
            return super().compose_node(parent, index)
        finally:
            self.nesting -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue  # `<<:` merges are meant to be overridden; other keys fail below
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ConfigError(
                    f"{self.source}: line {line}: key {key!r} appears twice in the same mapping "
                    f"(first at line {first_line[key]}); YAML would silently keep the last one: "
                    f"keep one of them"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep)


def _expanded_size(root: Node, source: str) -> None:
    """Refuse a node graph that refers to itself or expands past `MAX_EXPANDED_NODES` values.

    Aliases make the graph a DAG whose expanded size can be exponential in its length; sizes are
    memoised per node (and the walk is iterative), so checking costs time linear in the file."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(size[id(child)] for child in _children(node))
            if total > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"{source}: line {node.start_mark.line + 1}: its aliases expand to more than "
                    f"{MAX_EXPANDED_NODES} values (an alias bomb?); no configuration is that large"
                )
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError(
                f"{source}: line {node.start_mark.line + 1}: an alias refers to the value that "
                f"contains it, which would be infinitely deep"
            )
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise ConfigError(
                    f"{source}: line {child.start_mark.line + 1}: an alias refers to the value "
                    f"that contains it, which would be infinitely deep"
                )
            if id(child) not in size:
                stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What the parser found and where, without the snippet of the file it would quote."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = exc.problem or exc.context or "malformed"
        if exc.context and exc.problem:
            what = f"{exc.context}: {exc.problem}"
        return f"{where}{what}"
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.position + 1}: {exc.reason} (code point {exc.character!r})"
    return type(exc).__name__


def parse_config_yaml(text: str, source: str) -> Any:
    """One YAML document (None when empty), within the limits above; ConfigError otherwise."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES // 1024} KiB, far more than any configuration")
    try:
        loader = _BoundedLoader(text, source)  # its reader refuses control characters already
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _expanded_size(root, source)
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:  # a backstop: MAX_NESTING should stop every such input first
        raise ConfigError(f"{source}: nested too deeply to be a configuration") from None
    finally:
        loader.dispose()
