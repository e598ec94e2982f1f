"""YAML loading that remembers where every node came from.

PyYAML's ``safe_load`` loses positions, keeps the last of two duplicate keys without a word,
and reads ``1e-5`` as a string (YAML 1.1 wants a dot and a signed exponent). We compose the
node tree with PyYAML (libyaml when present) and build the Python data ourselves, so that:

- every key and value has its ``line:col`` (1-based), addressed by its path;
- a duplicate key is an error finding, pointing at the second one;
- a plain scalar that YAML 1.2 reads as a float (``1e-5``, ``1.0e5``) becomes that float, with
  a warning, because W&B (PyYAML) would see a string there;
- values other than numbers, strings, booleans and null (a date, ``!!binary``), and strings with
  a NUL character, are errors: no engine, tracker or command could take them;
- memory stays bounded: a file over ``MAX_BYTES`` is not read, and the nodes are counted on
  the parser's event stream before any tree is built (``MAX_NODES``, ``MAX_LIST_ITEMS``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .findings import Finding, Level, Path

try:  # libyaml is several times faster; positions are the same
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

_YAML12_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NOT_PLAIN_TAGS = {  # what YAML makes of it, and how to write a string instead
    "tag:yaml.org,2002:timestamp": ("a date", "quote it"),
    "tag:yaml.org,2002:binary": ("binary data", "remove '!!binary'"),
}
MAX_BYTES = 1024 * 1024  # real sweep files are a few KB; parsing 50 MB of YAML takes GBs
MAX_NODES = 200_000  # aliases can expand a small file into a huge tree ("billion laughs")
MAX_LIST_ITEMS = 100_000  # no sweep explores a categorical of more values than this
_MACRO_IN_FLOW = re.compile(r"\$\{[^}\s]*\}?")

_scalar_constructor = yaml.SafeLoader("")


@dataclass(frozen=True)
class Mark:
    line: int
    col: int


@dataclass
class Document:
    """A loaded YAML file: its data, the position of each node, and the loader's findings."""

    file: str
    data: Any
    value_marks: dict[Path, Mark] = field(default_factory=dict)
    key_marks: dict[Path, Mark] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def mark(self, path: Path, *, key: bool = False) -> Mark:
        """The position of ``path``: its key when ``key`` is set, else its value.

        Falls back to the closest ancestor that has a position (a missing key is reported at
        the mapping that should hold it).
        """
        table = self.key_marks if key else self.value_marks
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.value_marks:
                return self.value_marks[probe]
            probe = probe[:-1]
        return self.value_marks.get((), Mark(1, 1))

    def finding(
        self, level: Level, path: Path, message: str, *, rule: str = "schema", key: bool = False
    ) -> Finding:
        m = self.mark(path, key=key)
        return Finding(self.file, m.line, m.col, level, tuple(path), message, rule)


class _TooLarge(Exception):
    pass


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.count = 0
        self.active: set[int] = set()

    def _mark(self, node: yaml.Node) -> Mark:
        return Mark(node.start_mark.line + 1, node.start_mark.column + 1)

    def _add(self, level: Level, node: yaml.Node, path: Path, message: str, rule: str) -> None:
        m = self._mark(node)
        self.doc.findings.append(Finding(self.doc.file, m.line, m.col, level, path, message, rule))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge
        self.doc.value_marks.setdefault(path, self._mark(node))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self.active:
            self._add(
                "error",
                node,
                path,
                "an alias refers to the node that contains it; a spec cannot be recursive",
                "yaml",
            )
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, Mark] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.update(self._merge(value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._add(
                    "error",
                    key_node,
                    path,
                    "a key must be a plain value, not a list or mapping",
                    "yaml",
                )
                continue
            key = self._scalar(key_node, path, warn=False)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            if key in first_seen:
                first = first_seen[key]
                self._add(
                    "error",
                    key_node,
                    path + (key,),
                    f"duplicate key {key!r} (first at line {first.line}); PyYAML and W&B "
                    "would silently keep only the last one",
                    "duplicate-key",
                )
            first_seen[key] = self._mark(key_node)
            self.doc.key_marks[path + (key,)] = self._mark(key_node)
            self.doc.value_marks[path + (key,)] = self._mark(value_node)
            result[key] = self.build(value_node, path + (key,))
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def _merge(self, node: yaml.Node, path: Path) -> dict[Any, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[Any, Any] = {}
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self._add("error", source, path, "'<<' merges mappings only", "yaml")
                continue
            for key, value in self._mapping(source, path).items():
                merged.setdefault(key, value)
        return merged

    def _scalar(self, node: yaml.ScalarNode, path: Path, *, warn: bool = True) -> Any:
        tag = node.tag
        if tag == _STR_TAG:
            text = node.value
            if node.style in (None, "") and _YAML12_FLOAT.match(text):
                value = float(text)
                if warn:
                    self._add(
                        "warning",
                        node,
                        path,
                        f"{text!r} is a string to PyYAML (YAML 1.1) and so to W&B; "
                        f"sweepspec reads it as the number {value!r} (YAML 1.2). Write "
                        f"{_yaml11_float(value)} so that every tool reads the same number",
                        "yaml12-float",
                    )
                return value
            if "\0" in text:
                self._add(
                    "error",
                    node,
                    path,
                    "a string must not hold a NUL character (\\0): no command line, file name "
                    "or tracker can carry it",
                    "yaml",
                )
            return text
        if tag in _NOT_PLAIN_TAGS:
            shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            kind, fix = _NOT_PLAIN_TAGS[tag]
            self._add(
                "error",
                node,
                path,
                f"YAML reads {shown!r} as {kind}; a value must be a number, a string, "
                f"true/false or null: {fix} to keep it as a string",
                "yaml",
            )
            return node.value
        constructor = yaml.SafeLoader.yaml_constructors.get(tag)
        if constructor is None or not tag.startswith("tag:yaml.org,2002:"):
            self._add(
                "error",
                node,
                path,
                f"unsupported YAML tag {tag!r}; a spec holds plain values only",
                "yaml",
            )
            return node.value
        try:
            return constructor(_scalar_constructor, node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            kind = tag.rsplit(":", 1)[-1]
            self._add("error", node, path, f"cannot read {node.value!r} as {kind}: {exc}", "yaml")
            return node.value


def _yaml11_float(value: float) -> str:
    """A spelling of ``value`` that PyYAML reads as a float: ``1.0e-05``."""
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _expanded_size(root: yaml.Node) -> int:
    """The number of nodes once every alias is expanded, counted on the composed graph (an
    alias is the same node object) without building anything: an alias bomb is refused at
    once instead of after building MAX_NODES nodes."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:  # a recursive alias: the builder reports it
            return 1
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(value) for _, value in node.value)
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _refusal(file: str, line: int, col: int, message: str, rule: str = "yaml") -> Document:
    doc = Document(file=file, data=None)
    doc.findings.append(Finding(file, line, col, "error", (), message, rule))
    return doc


def _too_large(size: int) -> str:
    return (
        f"the file is {size} bytes, more than {MAX_BYTES} (1 MiB); a sweep spec is a few KB: "
        "refusing to read it"
    )


def _too_many_nodes(text: str, file: str) -> Document | None:
    """Count the nodes on the parser's event stream, keeping no tree, and refuse a file with
    more than ``MAX_NODES`` or a list longer than ``MAX_LIST_ITEMS``. None when it is fine or
    not valid YAML (composing it then says why)."""
    count = 0
    lists: list[list[Any]] = []  # [start mark, items] of each open list
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionEndEvent):
                if isinstance(event, yaml.SequenceEndEvent):
                    lists.pop()
                continue
            if not isinstance(event, yaml.NodeEvent):
                continue
            count += 1
            if lists:
                lists[-1][1] += 1
                if lists[-1][1] > MAX_LIST_ITEMS:
                    mark = lists[-1][0]
                    return _refusal(
                        file,
                        mark.line + 1,
                        mark.column + 1,
                        f"a list of more than {MAX_LIST_ITEMS} items is too long for a sweep "
                        "(no search explores that many values); use a range such as "
                        "int_uniform or q_uniform",
                    )
            if isinstance(event, yaml.SequenceStartEvent):
                lists.append([event.start_mark, 0])
            if count > MAX_NODES:
                return _refusal(
                    file,
                    1,
                    1,
                    f"the file has more than {MAX_NODES} YAML nodes; a sweep spec has a few "
                    "hundred: refusing to read it",
                )
    except yaml.YAMLError:
        return None
    return None


def _syntax_error(text: str, file: str, exc: yaml.MarkedYAMLError) -> Document:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
    start = exc.context_mark or mark
    if start is not None and mark is not None and "flow" in str(exc.context):
        # W&B's macros (`[${env}, ${args}]`): in a [...] or {...}, '${' opens a mapping
        brackets = "{...}" if "flow mapping" in str(exc.context) else "[...]"
        lines = text.splitlines()[start.line : mark.line + 1]
        for offset, text_line in enumerate(lines):
            macro = _MACRO_IN_FLOW.search(text_line)
            if macro:
                line, col = start.line + offset + 1, macro.start() + 1
                problem += (
                    f"; inside {brackets} YAML reads '${{' as the start of a mapping: quote the "
                    f'macro, "{macro.group(0)}"'
                )
                break
    return _refusal(file, line, col, f"not valid YAML: {problem}")


def loads(text: str, file: str = "<string>") -> Document:
    """Parse YAML ``text``; problems become findings on the returned document."""
    if len(text) > MAX_BYTES:
        return _refusal(file, 1, 1, _too_large(len(text.encode("utf-8", "replace"))))
    refused = _too_many_nodes(text, file)
    if refused is not None:
        return refused
    doc = Document(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        return _syntax_error(text, file, exc)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return _refusal(
            file,
            line,
            col,
            f"not valid YAML: the character {char!r} is not allowed in a YAML file",
        )
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        return _refusal(file, 1, 1, f"not valid YAML: {message}")
    if node is None:
        return _refusal(
            file,
            1,
            1,
            "the file is empty; a spec is a mapping with at least 'method' and 'parameters'",
        )
    try:
        if _expanded_size(node) > MAX_NODES:
            raise _TooLarge
        doc.data = _Builder(doc).build(node, ())
    except _TooLarge:
        doc.data = None
        doc.findings.append(
            Finding(
                file,
                1,
                1,
                "error",
                (),
                f"the document expands to more than "
                f"{MAX_NODES} nodes (aliases?); refusing to read it",
                "yaml",
            )
        )
    except RecursionError:
        doc.data = None
        doc.findings.append(
            Finding(file, 1, 1, "error", (), "the document is nested too deeply to read", "yaml")
        )
    return doc


def load(path: str) -> Document:
    """Read and parse the file at ``path``; unreadable files become an error finding. A file
    larger than ``MAX_BYTES`` is refused before it is read."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        return _refusal(path, 1, 1, f"cannot read the file: {exc.strerror or exc}", "io")
    if len(raw) > MAX_BYTES:
        return _refusal(path, 1, 1, _too_large(max(size, len(raw))), "io")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _refusal(
            path, 1, 1, f"not UTF-8 text (byte {exc.start}); a spec must be UTF-8", "io"
        )
    return loads(text, path)
