"""Read an experiment YAML file with every resource bounded, refusing hostile input early.

An experiment file is small, shallow data. Hostile or broken files are refused *before* anything
is expanded, each with a located message (``yaml.MarkedYAMLError`` with a mark; the caller turns
it into ``exp.yaml:LINE: reason``):

* only a regular file is read (a device such as ``/dev/zero``, a FIFO, a folder are refused
  without blocking), at most :data:`MAX_BYTES`;
* nesting deeper than :data:`MAX_DEPTH` levels (flow lists ``[[[[...`` or block nesting);
* more than :data:`MAX_ALIASES` alias uses, or aliases that would expand to more than
  :data:`MAX_ALIAS_NODES` nodes (billion-laughs and ``<<:`` merge-key bombs), or an alias to a
  node that contains it (a recursive alias): counted while composing, so nothing is expanded;
* duplicate mapping keys, unhashable keys;
* a tag on a scalar it cannot read (``!!int abc``, ``!!timestamp x``, a 5,000-digit integer);
* tags that build Python objects (the loader is a safe loader);
* ``<<:`` merge keys: they copy another mapping's keys in without a word (a key written beside
  them silently wins over the merged one, and the merged keys are not visible where they act);
  buckets and field sets share keys through ``extends:`` instead, which is checked and located.

Events come from libyaml when it is installed (fast: a 10 MB scalar parses in milliseconds; it
also caps flow nesting at 1,000 itself), else from PyYAML's Python parser, whose scanner gets a
flow-depth cap here because its simple-key bookkeeping is quadratic in the flow depth. Valid
documents load to exactly the data ``yaml.load(text, SafeLoader)`` gives.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver
from yaml.scanner import ScannerError

#: Largest experiment file read (bytes); a real one is a few kB.
MAX_BYTES = 16 * 1024 * 1024
#: Deepest nesting of mappings and lists; an experiment needs about 6.
MAX_DEPTH = 64
#: Most alias uses (``*name``) in one document.
MAX_ALIASES = 100
#: Most nodes that alias uses may add when expanded (each alias adds its anchor's full size).
MAX_ALIAS_NODES = 100_000


class FileProblem(Exception):
    """The experiment path cannot be read as a YAML file; ``str(exc)`` is the reason."""


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    """The text of a regular file of at most ``limit`` bytes, with universal newlines.

    Opens without blocking (a FIFO with no writer returns at once) and checks the opened file,
    so a device or FIFO is never read.

    Raises:
        FileNotFoundError: no such file.
        FileProblem: not a regular file, too large, or unreadable (with the reason).
        UnicodeDecodeError: not UTF-8.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise FileProblem(f"cannot read experiment file ({exc})") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise FileProblem(f"cannot read experiment file ({exc})") from None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)  # (a folder's descriptor cannot become a file object)
        raise FileProblem(f"not a regular file ({_kind(st.st_mode)}); give the experiment's "
                          "YAML file")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > limit:
            raise FileProblem(_too_large(limit))
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise FileProblem(f"cannot read experiment file ({exc})") from None
    if len(data) > limit:  # grew while being read
        raise FileProblem(_too_large(limit))
    # Same text as Path.read_text(encoding="utf-8"): universal newlines, BOM kept.
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket or other special file"


def _too_large(limit: int) -> str:
    return (f"the file is larger than {limit / (1024 * 1024):g} MB; an experiment file is a "
            "few kB of YAML")


class _BoundedComposer(Composer):
    """A composer that bounds nesting depth and alias expansion while it builds the node tree.

    Every composed node's *expanded* size (itself plus its children, aliases counted at their
    anchor's expanded size) is known once it is complete, so an alias use adds a known amount;
    a document whose aliases would add more than :data:`MAX_ALIAS_NODES` is refused at the alias
    that crosses the line, before any construction.
    """

    def compose_document(self) -> Any:
        self._depth = 0
        self._alias_uses = 0
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> expanded node count
        try:
            return super().compose_document()  # type: ignore[no-untyped-call]
        finally:
            self._sizes = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):  # type: ignore[attr-defined]
            event = self.peek_event()  # type: ignore[attr-defined]
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._count_alias(event, target)
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"the document nests deeper than {MAX_DEPTH} "
                                    "levels; an experiment file needs only a few",
                                    self.peek_event().start_mark)  # type: ignore[attr-defined]
            node: Any = super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1
        sizes = [self._sizes.get(id(c), 1) for c in _children(node)]
        self._sizes[id(node)] = 1 + sum(sizes)
        return node

    def _count_alias(self, event: Any, target: yaml.Node) -> None:
        size = self._sizes.get(id(target))
        if size is None:  # the anchored node is still being composed: it contains the alias
            raise ComposerError(None, None, f"alias *{event.anchor} refers to a node that "
                                "contains it (a recursive alias)", event.start_mark)
        self._alias_uses += 1
        self._alias_nodes += size
        if self._alias_uses > MAX_ALIASES:
            raise ComposerError(None, None, f"more than {MAX_ALIASES} aliases ('*name'); an "
                                "experiment file does not need them and they can expand without "
                                "bound", event.start_mark)
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise ComposerError(None, None, f"aliases ('*name', '<<:') would expand to more than "
                                f"{MAX_ALIAS_NODES:,} nodes (an alias bomb?); an experiment file "
                                "does not need them", event.start_mark)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _Constructor(SafeConstructor):
    """Safe construction that refuses duplicate or unhashable keys and unreadable tagged scalars."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)  # type: ignore[no-untyped-call]
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError,
                IndexError) as exc:
            # SafeConstructor calls int()/float()/datetime() etc. on the scalar: `!!int abc`,
            # `!!bool maybe`, `!!timestamp x`, a 5,000-digit integer.
            kind = str(node.tag).rsplit(":", 1)[-1]
            shown = node.value if isinstance(node.value, str) else ""
            reason = str(exc).split("\n")[0][:80] or type(exc).__name__
            raise ConstructorError(None, None, f"cannot read {shown!r:.60} as {kind} ({reason})",
                                   node.start_mark) from None


def _construct_mapping(loader: _Constructor, node: yaml.MappingNode, deep: bool = False
                       ) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found a key that is a list or mapping; keys must be plain values",
                key_node.start_mark) from None
        if key in seen:
            raise ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)  # type: ignore[no-untyped-call]


_Constructor.add_constructor(  # type: ignore[type-var]
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping  # type: ignore[arg-type]
)

#: Why ``<<:`` is refused, said where the merge key stands.
MERGE_KEY_REFUSED = (
    "'<<' merge keys are not supported: they copy another mapping's keys in silently (a key "
    "also written here quietly wins over the merged one); to share keys between buckets or "
    "between field sets, write `extends: NAME` in the entry instead")


def _refuse_merge_key(loader: _Constructor, node: yaml.Node) -> Any:
    # Reached while the duplicate-key check constructs each key (before any merging happens).
    raise ConstructorError(None, None, MERGE_KEY_REFUSED, node.start_mark)


_Constructor.add_constructor(  # type: ignore[type-var]
    "tag:yaml.org,2002:merge", _refuse_merge_key  # type: ignore[arg-type]
)


class _BoundedScanner(yaml.scanner.Scanner):
    """PyYAML's scanner with a flow-depth cap (its stale-key check is O(depth) per token)."""

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        if self.flow_level >= MAX_DEPTH:
            raise ScannerError(None, None, f"the document nests deeper than {MAX_DEPTH} levels; "
                               "an experiment file needs only a few",
                               self.get_mark())  # type: ignore[attr-defined]
        super().fetch_flow_collection_start(TokenClass)  # type: ignore[no-untyped-call]


class PyLoader(yaml.reader.Reader, _BoundedScanner, yaml.parser.Parser, _BoundedComposer,
               _Constructor, Resolver):
    """The bounded loader on PyYAML's pure-Python parser (used when libyaml is missing)."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)  # type: ignore[no-untyped-call]
        _BoundedScanner.__init__(self)  # type: ignore[no-untyped-call]
        yaml.parser.Parser.__init__(self)  # type: ignore[no-untyped-call]
        Composer.__init__(self)  # type: ignore[no-untyped-call]
        _Constructor.__init__(self)  # type: ignore[no-untyped-call]
        Resolver.__init__(self)  # type: ignore[no-untyped-call]


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    CLoader: type | None = None
else:
    class _CLoader(_BoundedComposer, CParser, _Constructor, Resolver):  # type: ignore[misc]
        """The bounded loader on libyaml's events (composition stays in Python, bounded)."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)  # type: ignore[no-untyped-call]
            _Constructor.__init__(self)  # type: ignore[no-untyped-call]
            Resolver.__init__(self)  # type: ignore[no-untyped-call]

    CLoader = _CLoader


def load_text(text: str, *, pure_python: bool = False) -> tuple[Any, yaml.Node | None]:
    """Compose (bounded) and construct one YAML document.

    Returns:
        ``(data, node)``: the constructed data (None for an empty document) and the node tree
        as composed (for line numbers).

    Raises:
        yaml.YAMLError: any problem, with a mark where one is known.
    """
    cls: Any = PyLoader if pure_python or CLoader is None else CLoader
    loader = cls(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        # Construction leaves the node tree as composed: `<<:` merge keys, which would be
        # flattened into it, are refused first (their key's constructor refuses them).
        return loader.construct_document(node), node
    finally:
        loader.dispose()
