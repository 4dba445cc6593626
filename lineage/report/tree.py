"""The tree's outputs: `tree.json`, one model-card YAML snippet per model, the drawing (PNG and SVG) and
`report.html` with the tree as its section.

The drawing puts every root at the top and each model one row below its deepest parent (a merge below
all of its parents), each tree side by side, leaves spread evenly and every parent centred over its
children, so a hundred models stay readable at the figure's size (it grows with the widest row). Edges are
labelled by relation; an undirected edge is dotted; a model whose declared `base_model` the weights
contradict is drawn in red, with a dashed red line to the model it declared when that one is in the tree.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from lineage.report.html import write_tree_html
from lineage.report.plots import _pyplot

TREE_JSON, TREE_PNG, TREE_SVG, CARDS_DIR = "tree.json", "tree.png", "tree.svg", "model-cards"
REPORT_HTML = "report.html"
CONFLICT = "#c00000"


class TreeResult(Protocol):
    """What the report reads of a tree job (`lineage.jobs.tree.TreeResult`)."""

    def to_dict(self) -> dict: ...

    def card(self, name: str) -> str: ...


def layout(names: Sequence[str], edges: Sequence[dict]) -> dict[str, tuple[float, float]]:
    """`name -> (x, depth)`: roots at depth 0, a model one below its deepest parent, trees side by side."""
    parents: dict[str, list[str]] = defaultdict(list)
    children: dict[str, list[str]] = defaultdict(list)
    for e in edges:
        parents[e["child"]].append(e["parent"])
        children[e["parent"]].append(e["child"])
    depth: dict[str, int] = {}

    def deep(n: str, seen: frozenset = frozenset()) -> int:
        if n not in depth:
            ups = [p for p in parents[n] if p not in seen]
            depth[n] = 1 + max((deep(p, seen | {n}) for p in ups), default=-1)
        return depth[n]

    for n in names:
        deep(n)
    x: dict[str, float] = {}
    cursor = [0.0]

    def place(n: str) -> float:
        if n in x:
            return x[n]
        own = [c for c in sorted(children[n]) if parents[c] and parents[c][0] == n]  # a merge under its first parent
        if not own:
            x[n] = cursor[0]
            cursor[0] += 1.0
        else:
            xs = [place(c) for c in own]
            x[n] = sum(xs) / len(xs)
        return x[n]

    roots = [n for n in names if not parents[n]]
    for r in sorted(roots, key=lambda r: (not children[r], r)):
        place(r)
        cursor[0] += 0.5 if children[r] else 0.0
    for n in names:
        place(n)
    return {n: (x[n], float(depth[n])) for n in names}


def draw_tree(doc: dict, png: str | Path, svg: str | Path) -> list[Path]:
    """Draw the tree of a `tree.json` document as PNG and SVG."""
    plt = _pyplot()
    nodes = [n for n in doc["nodes"] if n["status"] == "ok"]
    names = [n["name"] for n in nodes]
    edges = doc["edges"]
    pos = layout(names, edges)
    width = max([p[0] for p in pos.values()], default=0) + 1
    rows = max([p[1] for p in pos.values()], default=0) + 1
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * width + 2), max(4.0, 1.6 * rows + 1)))
    bad = {n["name"] for n in nodes if n.get("declared_check") == "contradicted"}
    for e in edges:
        (x0, y0), (x1, y1) = pos[e["parent"]], pos[e["child"]]
        colour = CONFLICT if e["child"] in bad else "#555555"
        style = ":" if e["direction"] != "directed" else "-"
        ax.annotate("", xy=(x1, -y1), xytext=(x0, -y0),
                    arrowprops={"arrowstyle": "-|>" if e["direction"] == "directed" else "-", "color": colour,
                                "linestyle": style, "shrinkA": 9, "shrinkB": 9})  # fmt: skip
        ax.text((x0 + x1) / 2, -(y0 + y1) / 2, e["relation"], fontsize=6, color=colour, ha="center", va="center",
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})  # fmt: skip
    for n in nodes:
        for d in n.get("declared_base_model") or []:
            if n["name"] in bad and d in pos:
                (x0, y0), (x1, y1) = pos[d], pos[n["name"]]
                ax.plot([x0, x1], [-y0, -y1], linestyle="--", color=CONFLICT, linewidth=0.8)
    for name, (x, y) in pos.items():
        colour = CONFLICT if name in bad else "#1f4e9c"
        ax.plot([x], [-y], "o", color=colour, markersize=7)
        ax.text(x, -y - 0.18, name, fontsize=6, rotation=30, ha="right", va="top", color=colour)
    ax.set_xlim(-1, width)
    ax.set_ylim(-rows + 0.2, 0.6)
    ax.axis("off")
    ax.set_title("Model tree from the weights\n(roots on top; red: declared base_model contradicted; "
                 "dotted: undirected)", fontsize=9)
    out = []
    for path, fmt in ((png, "png"), (svg, "svg")):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, format=fmt, dpi=150 if fmt == "png" else None)
        out.append(path)
    plt.close(fig)
    return out


def write_tree_report(result: TreeResult, out_dir: str | Path) -> list[Path]:
    """Write `tree.json`, `model-cards/<name>.yaml`, `tree.png`, `tree.svg` and `report.html` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = result.to_dict()
    (out / TREE_JSON).write_text(json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    written = [out / TREE_JSON]
    cards = out / CARDS_DIR
    cards.mkdir(exist_ok=True)
    for n in doc["nodes"]:
        if n["status"] == "ok":
            path = cards / f"{_safe(n['name'])}.yaml"
            path.write_text(result.card(n["name"]), encoding="utf-8")
            written.append(path)
    written += draw_tree(doc, out / TREE_PNG, out / TREE_SVG)
    return [*written, write_tree_html(out / REPORT_HTML, doc, out / TREE_PNG)]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "model"


__all__ = ["draw_tree", "layout", "write_tree_report"]
