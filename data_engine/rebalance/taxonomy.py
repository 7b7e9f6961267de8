"""A tag taxonomy as a tree: a generic TSV loader and a real default built from WordNet's noun hierarchy.

File format (UTF-8, tab-separated, one node per line, header `id parent name aliases gloss`): `parent` is
empty for roots, `aliases` is `|`-separated. Parents may come after children; 285K leaves load in seconds.
The tag vocabulary is the set of leaves; a leaf's text for embedding is its name, aliases and gloss.

WordNet (Debian `wordnet-base`, files under /usr/share/wordnet): noun synsets are nodes and the first
hypernym pointer (`@` or `@i`) is the tree parent; WordNet is a DAG, so a synset with several hypernyms
keeps only its first, as WordNet lists its primary one first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WORDNET_DIR = Path("/usr/share/wordnet")
HEADER = ("id", "parent", "name", "aliases", "gloss")


class TaxonomyError(ValueError):
    """A taxonomy file is malformed; the message names the file and line."""


@dataclass
class Taxonomy:
    ids: list[str]
    parents: np.ndarray  # index of each node's parent, -1 for roots
    names: list[str]
    aliases: list[tuple[str, ...]]
    glosses: list[str]
    sha256: str
    depth: np.ndarray = field(init=False)
    leaves: np.ndarray = field(init=False)  # node indices of the leaves, the tag vocabulary
    # (nodes, max depth + 1): column d holds each node's ancestor at depth d (the node itself when it is not
    # deeper), so a caption's tags find their ancestors at any depth in one lookup.
    ancestors: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.depth = _depths(self.parents)
        has_child = np.zeros(len(self.ids), dtype=bool)
        has_child[self.parents[self.parents >= 0]] = True
        self.leaves = np.flatnonzero(~has_child)
        self.ancestors = _ancestor_table(self.parents, self.depth)

    def leaf_texts(self) -> list[str]:
        texts = []
        for node in self.leaves:
            names = ", ".join((self.names[node], *self.aliases[node]))
            texts.append(f"{names}: {self.glosses[node]}" if self.glosses[node] else names)
        return texts

    def ancestor_at_depth(self, nodes: np.ndarray, depth: int) -> np.ndarray:
        """Each node's ancestor at `depth` (the node itself when it is not deeper)."""
        return self.ancestors[np.asarray(nodes), min(depth, self.ancestors.shape[1] - 1)]


def _ancestor_table(parents: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Column d from column d + 1: a node deeper than d has, at depth d, the parent of its ancestor at d + 1."""
    columns = int(depth.max()) + 1 if len(depth) else 1
    table = np.empty((len(parents), columns), dtype=np.int32)
    table[:, -1] = np.arange(len(parents))
    for level in range(columns - 2, -1, -1):
        below = table[:, level + 1]
        table[:, level] = np.where(depth[below] > level, parents[below], below)
    return table


def _depths(parents: np.ndarray) -> np.ndarray:
    depth = np.full(len(parents), -1, dtype=np.int32)
    depth[parents < 0] = 0
    for _ in range(len(parents)):
        unknown = depth < 0
        if not unknown.any():
            return depth
        known_parent = unknown & (depth[np.maximum(parents, 0)] >= 0) & (parents >= 0)
        depth[known_parent] = depth[parents[known_parent]] + 1
    raise TaxonomyError("taxonomy has a cycle")


def load_taxonomy(path: Path) -> Taxonomy:
    raw = path.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise TaxonomyError(f"{path}:1: header must be {' '.join(HEADER)} (tab-separated)")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != len(HEADER) or not parts[0]:
            raise TaxonomyError(f"{path}:{number}: expected {len(HEADER)} tab-separated fields with an id")
        rows.append(parts)
    index = {row[0]: i for i, row in enumerate(rows)}
    if len(index) != len(rows):
        raise TaxonomyError(f"{path}: duplicate node ids")
    parents = np.full(len(rows), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        if row[1]:
            if row[1] not in index:
                raise TaxonomyError(f"{path}:{i + 2}: parent {row[1]!r} of {row[0]!r} is not a node")
            parents[i] = index[row[1]]
    return Taxonomy([r[0] for r in rows], parents, [r[2] for r in rows],
                    [tuple(a for a in r[3].split("|") if a) for r in rows], [r[4] for r in rows],
                    hashlib.sha256(raw).hexdigest())


def write_taxonomy(path: Path, nodes: Iterator[tuple[str, str, str, tuple[str, ...], str]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(HEADER) + "\n")
        for node_id, parent, name, aliases, gloss in nodes:
            clean = [s.replace("\t", " ").replace("\n", " ") for s in (node_id, parent, name, "|".join(aliases), gloss)]
            handle.write("\t".join(clean) + "\n")


def wordnet_noun_nodes(wordnet_dir: Path = WORDNET_DIR, root: str | None = None
                       ) -> Iterator[tuple[str, str, str, tuple[str, ...], str]]:
    """Noun synsets of WordNet's data.noun as (id, parent, name, aliases, gloss); `root` (a synset offset,
    e.g. "02084071" for dog) limits the tree to that subtree."""
    path = wordnet_dir / "data.noun"
    if not path.is_file():
        raise TaxonomyError(f"{path}: not found; install the Debian package wordnet-base")
    synsets: dict[str, tuple[str, str, tuple[str, ...], str]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("  "):  # the licence header
                continue
            data, _, gloss = line.partition(" | ")
            fields = data.split()
            offset, word_count = fields[0], int(fields[3], 16)
            words = [fields[4 + 2 * i].replace("_", " ") for i in range(word_count)]
            position = 4 + 2 * word_count
            pointer_count = int(fields[position])
            pointers = [fields[position + 1 + 4 * i: position + 5 + 4 * i] for i in range(pointer_count)]
            hypernyms = [p[1] for p in pointers if p[0] in ("@", "@i") and p[2] == "n"]
            synsets[offset] = (hypernyms[0] if hypernyms else "", words[0], tuple(words[1:]), gloss.strip())
    keep = set(synsets) if root is None else _subtree(synsets, root)
    for offset in sorted(keep):
        parent, name, aliases, gloss = synsets[offset]
        yield offset, parent if parent in keep and offset != root else "", name, aliases, gloss


def _subtree(synsets: dict[str, tuple[str, str, tuple[str, ...], str]], root: str) -> set[str]:
    if root not in synsets:
        raise TaxonomyError(f"WordNet has no noun synset {root!r}")
    children: dict[str, list[str]] = {}
    for offset, (parent, *_rest) in synsets.items():
        children.setdefault(parent, []).append(offset)
    keep, frontier = {root}, [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            keep.add(child)
            frontier.append(child)
    return keep
