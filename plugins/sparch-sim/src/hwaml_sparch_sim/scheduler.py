"""Merge schedules over partial matrices: the Huffman-tree scheduler and the in-order one.

The merge tree merges at most ``ways`` partial matrices in one pass. With more
partial matrices than that, results of earlier passes are spilled to DRAM and
read back by later ones; every byte of a non-root merge result therefore costs a
write and a read. SpArch's scheduler builds a ``ways``-ary Huffman tree over the
partial matrices, weighted by their number of non-zeros, so that the small ones
are merged (and spilled) first and the large ones go straight into the final
pass. As in k-ary Huffman coding, the first pass takes
``2 + (n - 2) mod (ways - 1)`` matrices so that every later pass is full.

The scheduler is dynamic: after each pass it knows the real size of the merged
result (duplicates accumulated) and uses that size for the rest of the tree, as
the hardware does with the counts its partial-matrix writer reports.

The *in-order* schedule is the baseline without the scheduler: a balanced
``ways``-ary tree over the partial matrices in their natural order (column or
condensed-column index), level by level.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Callable, List, Sequence, Tuple

__all__ = ["MergeNode", "Item", "huffman_schedule", "in_order_schedule", "run_schedule", "SCHEDULES"]

#: an operand of a merge pass: ("leaf", partial-matrix index) or ("node", pass index)
Item = Tuple[str, int]


@dataclass
class MergeNode:
    """One pass through the merge tree."""

    index: int
    children: List[Item]
    input_nnz: int = 0  # elements streamed into the tree
    output_nnz: int = 0  # elements of the merged result
    is_root: bool = False
    leaves: List[int] = field(default_factory=list)  # leaf children, in port order
    spilled_children: List[int] = field(default_factory=list)  # node children, read back from DRAM


#: merge_fn(node) computes the pass and returns the result's number of non-zeros
MergeFn = Callable[[MergeNode], int]


def huffman_schedule(leaf_sizes: Sequence[int], ways: int, merge_fn: MergeFn) -> List[MergeNode]:
    """Run the Huffman-tree schedule; ``merge_fn`` performs each pass and returns its size."""
    n = len(leaf_sizes)
    if n == 0:
        return []
    heap: List[Tuple[int, int, Item]] = []
    seq = 0
    for i, s in enumerate(leaf_sizes):
        heap.append((int(s), seq, ("leaf", i)))
        seq += 1
    heapq.heapify(heap)
    nodes: List[MergeNode] = []
    take = n if n <= ways else 2 + (n - 2) % (ways - 1)
    while True:
        group = [heapq.heappop(heap) for _ in range(min(take, len(heap)))]
        node = _make_node(len(nodes), [g[2] for g in group], [g[0] for g in group])
        node.is_root = not heap
        node.output_nnz = int(merge_fn(node))
        nodes.append(node)
        if node.is_root:
            return nodes
        heapq.heappush(heap, (node.output_nnz, seq, ("node", node.index)))
        seq += 1
        take = ways


def in_order_schedule(leaf_sizes: Sequence[int], ways: int, merge_fn: MergeFn) -> List[MergeNode]:
    """Balanced ``ways``-ary tree over the partial matrices in index order."""
    n = len(leaf_sizes)
    if n == 0:
        return []
    level: List[Tuple[Item, int]] = [(("leaf", i), int(s)) for i, s in enumerate(leaf_sizes)]
    nodes: List[MergeNode] = []
    while True:
        last = len(level) <= ways
        nxt: List[Tuple[Item, int]] = []
        for start in range(0, len(level), ways):
            chunk = level[start : start + ways]
            node = _make_node(len(nodes), [c[0] for c in chunk], [c[1] for c in chunk])
            node.is_root = last
            node.output_nnz = int(merge_fn(node))
            nodes.append(node)
            nxt.append((("node", node.index), node.output_nnz))
        if last:
            return nodes
        level = nxt


def _make_node(index: int, children: List[Item], sizes: List[int]) -> MergeNode:
    node = MergeNode(index=index, children=list(children), input_nnz=int(sum(sizes)))
    node.leaves = [i for kind, i in children if kind == "leaf"]
    node.spilled_children = [i for kind, i in children if kind == "node"]
    return node


SCHEDULES = {"huffman": huffman_schedule, "in_order": in_order_schedule}


def run_schedule(policy: str, leaf_sizes: Sequence[int], ways: int, merge_fn: MergeFn) -> List[MergeNode]:
    if policy not in SCHEDULES:
        raise ValueError(f"unknown merge schedule {policy!r}; choose one of {sorted(SCHEDULES)}")
    if ways < 2:
        raise ValueError(f"a merge tree needs at least 2 ways, got {ways}")
    return SCHEDULES[policy](leaf_sizes, ways, merge_fn)


def spilled_nnz(nodes: Sequence[MergeNode]) -> int:
    """Elements written to (and later read back from) DRAM between passes."""
    return int(sum(n.output_nnz for n in nodes if not n.is_root))
