"""A layered (Sugiyama-style) layout of a DAG, drawn top to bottom; no Graphviz, no dependencies.

1. Ranks: the longest path from a source, so every edge points down.
2. Rows: each edge becomes a chain of items, one per row it passes: its label in the row right
   under its source (rows are doubled: node rows and label rows alternate), then a point in each
   row it crosses. So labels and long edges take room like boxes and nothing is drawn over them.
3. Order: barycentre sweeps, down and up, keeping the order with the fewest crossings.
4. Coordinates: Sugiyama's priority method, sweeping down and up: chains of boxes run straight,
   fans open evenly under their box, long edges run straight beside them and bend at their ends.
5. Edges: vertical through every row they cross, straight between rows, from a port on the
   source's bottom to a port on the target's top. Segments between rows cannot cross a box.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass

NODE_GAP = 28.0  # horizontal room between two boxes in a row
POINT_GAP = 14.0  # horizontal room around an edge passing through a row
ROW_GAP = 12.0  # vertical room between rows, where edges bend
MARGIN = 16.0
SWEEPS = 12  # barycentre sweeps (down and up); the best order seen is kept
PLACEMENT_SWEEPS = 5  # down, up, down, up, down


@dataclass(frozen=True)
class Placement:
    width: float
    height: float
    boxes: tuple  # per node: (left, top, width, height)
    edges: tuple  # per edge: the points of its polyline, from the source's bottom to the target's top
    labels: tuple  # per edge: the centre of its label


@dataclass
class _Item:
    row: int
    width: float
    height: float
    node: int | None = None  # a node's index; None for an edge's label or pass-through point
    long: bool = False  # a point of an edge that spans more than one rank
    up: list = None  # items in the row above it is joined to
    down: list = None  # items in the row below
    x: float = 0.0
    index: int = 0  # its position in its row
    split: "_Item | None" = None  # for a merge, the box its branches part from (its immediate dominator)

    def __post_init__(self):
        self.up, self.down = [], []


def layered(sizes, edges, label_sizes) -> Placement:
    """`sizes`: (width, height) per node; `edges`: (source, target) pairs of a DAG; `label_sizes`:
    (width, height) per edge. Nodes are first ordered as numbered, so a good numbering helps."""
    order = _topological(len(sizes), edges)
    rank = [0] * len(sizes)
    into = [[] for _ in sizes]
    for u, v in edges:
        into[v].append(u)
    for v in order:
        rank[v] = max((rank[u] + 1 for u in into[v]), default=0)
    items = [_Item(2 * rank[i], w, h, node=i) for i, (w, h) in enumerate(sizes)]
    for v, split in _splits(order, into).items():
        items[v].split = items[split]
    out_edges = [[] for _ in sizes]
    for k, (u, v) in enumerate(edges):
        out_edges[u].append(k)
    rows = [[] for _ in range(2 * max(rank, default=0) + 1)]
    chain_of = {}
    for u in order:  # the first order in each row: the nodes' order, each edge right after its source
        rows[items[u].row].append(items[u])
        for k in out_edges[u]:
            v = edges[k][1]
            chain = [items[u]]
            for row in range(2 * rank[u] + 1, 2 * rank[v]):
                label = row == 2 * rank[u] + 1
                w, h = label_sizes[k] if label else (0.0, 0.0)
                if label and rank[v] == rank[u] + 1:  # the label sits over its box: keep the box's room,
                    w = max(w, sizes[v][0])  # so a fan of short edges opens as wide as its boxes
                item = _Item(row, w, h, long=rank[v] > rank[u] + 1)
                rows[row].append(item)
                chain.append(item)
            chain.append(items[v])
            for a, b in zip(chain, chain[1:]):
                a.down.append(b)
                b.up.append(a)
            chain_of[k] = chain
    _order(rows)
    _place(rows)
    return _geometry(rows, items, [chain_of[k] for k in range(len(edges))])


def _topological(count: int, edges) -> list[int]:
    """Kahn's order, the lowest-numbered ready node first."""
    waiting = [0] * count
    out = [[] for _ in range(count)]
    for u, v in edges:
        out[u].append(v)
        waiting[v] += 1
    ready = [v for v in range(count) if not waiting[v]]
    order = []
    while ready:
        u = heapq.heappop(ready)
        order.append(u)
        for v in out[u]:
            waiting[v] -= 1
            if not waiting[v]:
                heapq.heappush(ready, v)
    if len(order) != count:
        raise ValueError("the graph has a cycle")
    return order


def _splits(order, into) -> dict:
    """For each node with several inputs, the node all its paths from the top pass last (its
    immediate dominator: Cooper, Harvey and Kennedy's intersection, one pass in a DAG)."""
    idom, depth, splits = {}, {}, {}

    def meet(a, b):
        while a != b and a is not None and b is not None:
            a, b = (idom[a], b) if depth[a] >= depth[b] else (a, idom[b])
        return a if a == b else None

    for v in order:
        d = into[v][0] if into[v] else None
        for u in into[v][1:]:
            d = meet(d, u)
        idom[v], depth[v] = d, depth[d] + 1 if d is not None else 0
        if len(into[v]) > 1 and d is not None:
            splits[v] = d
    return splits


# -- order -----------------------------------------------------------------------------------
def _order(rows) -> None:
    _number(rows)
    best, fewest = [list(r) for r in rows], _crossings(rows)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        for row in (rows[1:] if down else rows[-2::-1]):
            _sort_by_barycentre(row, "up" if down else "down")
        crossings = _crossings(rows)
        if crossings < fewest:
            best, fewest = [list(r) for r in rows], crossings
        if fewest == 0:
            break
    rows[:] = best
    _number(rows)


def _number(rows) -> None:
    for row in rows:
        for i, item in enumerate(row):
            item.index = i


def _sort_by_barycentre(row, side: str) -> None:
    def key(item):
        neighbours = getattr(item, side)
        if not neighbours:
            return item.index  # nothing to follow: it stays about where it is
        return sum(n.index for n in neighbours) / len(neighbours)

    row.sort(key=key)  # stable: ties keep their order
    for i, item in enumerate(row):
        item.index = i


def _crossings(rows) -> int:
    """Edge crossings between each two rows: the inversions among the edges' lower ends once they
    are sorted by their upper ends (counted with a Fenwick tree, so wide rows stay fast)."""
    total = 0
    for row, below in zip(rows, rows[1:]):
        ends = sorted((a.index, b.index) for a in row for b in a.down)
        tree = [0] * (len(below) + 1)  # how many ends seen so far, by lower index
        for seen, (_, b) in enumerate(ends):
            i, at_most = b + 1, 0  # ends seen with a lower end at or left of b
            while i:
                at_most += tree[i]
                i -= i & -i
            total += seen - at_most
            i = b + 1
            while i <= len(below):
                tree[i] += 1
                i += i & -i
    return total


# -- coordinates -------------------------------------------------------------------------------
def _place(rows) -> None:
    """Sugiyama's priority method: row by row, down then up, each item is put where its neighbours
    on that side want it, in order of priority (see _priority); an item never pushes one placed
    before it, only those of lower priority."""
    for row in rows:  # packed from the left to start
        for i, item in enumerate(row):
            item.x = row[i - 1].x + _gap(row[i - 1], item) if i else 0.0
    for sweep in range(PLACEMENT_SWEEPS):
        down = sweep % 2 == 0
        for row in (rows[1:] if down else rows[-2::-1]):
            _settle(row, "up" if down else "down")
    left = min(i.x - i.width / 2 for row in rows for i in row)
    for row in rows:
        for item in row:
            item.x += MARGIN - left


def _gap(a, b) -> float:
    room = NODE_GAP if a.node is not None and b.node is not None else POINT_GAP
    return (a.width + b.width) / 2 + room


def _settle(row, side: str) -> None:
    offsets = [0.0]  # the least distance of each item from the first
    for a, b in zip(row, row[1:]):
        offsets.append(offsets[-1] + _gap(a, b))
    fans = {}  # id(parent) -> its children's offsets from the middle of their fan, computed once
    wanted = [_wanted(item, side, fans) for item in row]
    rank = sorted(range(len(row)), key=lambda i: (-_priority(row[i], side), i))
    placed = []  # indices placed so far, kept sorted
    for i in rank:
        at = bisect.bisect(placed, i)
        low = row[placed[at - 1]].x + offsets[i] - offsets[placed[at - 1]] if at else -math.inf
        high = row[placed[at]].x - (offsets[placed[at]] - offsets[i]) if at < len(placed) else math.inf
        row[i].x = min(max(wanted[i], low), high)
        placed.insert(at, i)


def _priority(item, side: str) -> float:
    """Boxes and their edges of one rank first, so chains stay straight; then a long edge's inside,
    which runs straight where boxes leave it room; its ends last, so that is where it bends."""
    if not item.long:
        return 10.0 + len(getattr(item, side))
    return 5.0 if all(n.long for n in item.up + item.down) else 1.0


def _wanted(item, side: str, fans: dict) -> float:
    """The mean of the neighbours' positions; an only child of a node with several children on
    this side wants its own share of the space under (or over) it, so fans open evenly."""
    if side == "up" and item.split is not None:  # a merge closes under where its branches parted,
        return item.split.x  # so a fan and its merge line up, and the chain goes on straight
    near = getattr(item, side)
    near = [n for n in near if n.long == item.long] or near  # a box follows its chain, not long edges
    if not near:
        return item.x
    if len(near) > 1:
        return sum(n.x for n in near) / len(near)
    parent = near[0]
    key = (id(parent), item.long)
    if key not in fans:
        children = sorted((c for c in getattr(parent, "down" if side == "up" else "up") if c.long == item.long),
                          key=lambda c: c.index)
        starts = [0.0]
        for a, b in zip(children, children[1:]):
            starts.append(starts[-1] + _gap(a, b))
        fans[key] = {id(c): start - starts[-1] / 2 for c, start in zip(children, starts)}
    return parent.x + fans[key].get(id(item), 0.0)


# -- geometry ----------------------------------------------------------------------------------
def _geometry(rows, items, chains) -> Placement:
    tops, y = [], MARGIN
    for row in rows:
        tops.append(y)
        y += max((item.height for item in row), default=0.0) + ROW_GAP
    height = y - ROW_GAP + MARGIN
    width = max((item.x + item.width / 2 for row in rows for item in row), default=0.0) + MARGIN

    def middle(item):
        return tops[item.row] + max(i.height for i in rows[item.row]) / 2

    boxes = tuple((it.x - it.width / 2, middle(it) - it.height / 2, it.width, it.height) for it in items)
    lines, labels = [], []
    ports_out = _ports(chains, 0, 1, boxes)
    ports_in = _ports(chains, -1, -2, boxes)
    for k, chain in enumerate(chains):
        (sx, sy), (tx, ty) = ports_out[k], ports_in[k]
        points = [(sx, sy)]
        for item in chain[1:-1]:
            row_height = max(i.height for i in rows[item.row])
            points += [(item.x, tops[item.row]), (item.x, tops[item.row] + row_height)]
        points.append((tx, ty))
        lines.append(tuple(points))
        labels.append((chain[1].x, middle(chain[1])))
    return Placement(width, height, boxes, tuple(lines), tuple(labels))


def _ports(chains, end: int, toward: int, boxes) -> dict:
    """Where each edge leaves its source's bottom (end 0) or enters its target's top (end -1):
    spread along the side, in the order of the items they come from or go to, so they do not cross."""
    by_node = {}
    for k, chain in enumerate(chains):
        by_node.setdefault(id(chain[end]), []).append(k)
    ports = {}
    for edges in by_node.values():
        node = chains[edges[0]][end]
        left, top, width, height = boxes[node.node]
        edges.sort(key=lambda k: chains[k][toward].x)
        spread = min(width * 0.6, 24.0 * (len(edges) - 1))
        for j, k in enumerate(edges):
            x = node.x if len(edges) == 1 else node.x - spread / 2 + spread * j / (len(edges) - 1)
            ports[k] = (x, top + height if end == 0 else top)
    return ports
