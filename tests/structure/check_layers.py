#!/usr/bin/env python3
"""The layering of Loom's tree, checked from its #include lines (docs/architecture.md).

1. No include circle between files: a header and its .cpp count as one unit (a.h/a.cpp include
   b.h and b.h/b.cpp include a.h is a circle, even though no header includes itself).
2. Each folder includes only from itself and from the folders below it in LAYERS.
3. Nothing in the product includes code from scripts/ or tests/.

Usage: check_layers.py [REPO_ROOT]; exit 0 when all hold, 1 with the offending includes listed.
"""
import os
import re
import sys

# Each folder and the folders it may include from (besides itself). Folders not listed inherit
# the rule of their nearest listed parent.
LAYERS = {
    "runtime/core": [],
    "kernels": ["runtime/core"],
    "kernels/attention": ["kernels", "runtime/core"],
    "kernels/cuda": ["kernels"],
    "parallel/comm": ["runtime/core"],
    "parallel": ["parallel/comm", "runtime/core"],
    "parallel/data": ["optim", "kernels", "parallel/comm", "runtime/core"],
    "parallel/sequence": ["parallel/comm", "kernels/attention", "kernels", "runtime/core"],
    "parallel/tensor": ["parallel/comm", "kernels/attention", "kernels", "runtime/core"],
    "parallel/placement": ["parallel/sequence", "parallel/comm", "kernels/attention", "kernels", "runtime/core"],
    "optim": ["kernels", "runtime/core"],
    "runtime/data": ["runtime/core"],
    "runtime/model": ["parallel/sequence", "parallel/tensor", "parallel/comm", "kernels/attention", "kernels/cuda", "kernels", "runtime/core"],
    "runtime/train": ["runtime/train/chunkwise", "runtime/model", "runtime/data", "optim", "parallel", "parallel/placement", "parallel/comm",
                      "parallel/data", "parallel/sequence", "parallel/tensor", "kernels/attention", "kernels", "runtime/core"],
    "runtime/train/chunkwise": ["runtime/train", "runtime/model", "parallel/data", "parallel/sequence", "parallel/tensor",
                                "parallel/comm",
                                "kernels/attention", "kernels", "runtime/core"],
    "runtime/export": ["runtime/train", "runtime/model", "runtime/data", "optim", "parallel/sequence", "parallel/tensor",
                       "parallel/comm", "kernels",
                       "runtime/core"],
    "launch/bench": ["runtime/train/chunkwise", "runtime/train", "runtime/model", "runtime/data", "optim", "parallel",
                     "parallel/placement", "parallel/comm", "parallel/data", "parallel/sequence", "parallel/tensor", "kernels/attention", "kernels",
                     "runtime/core"],
    "launch": ["launch/bench", "runtime/export", "runtime/train/chunkwise", "runtime/train", "runtime/model",
               "runtime/data", "optim", "parallel", "parallel/placement", "parallel/comm", "parallel/data", "parallel/sequence", "parallel/tensor",
               "kernels/attention", "kernels", "runtime/core"],
}
PRODUCT = ("runtime", "parallel", "optim", "kernels", "launch")
SOURCE = re.compile(r"\.(h|hpp|cpp|cu|cuh)$")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of(path):
    folder = os.path.dirname(path)
    while folder and folder not in LAYERS:
        folder = os.path.dirname(folder)
    return folder


def unit_of(path):
    return os.path.splitext(path)[0]


def sources(root):
    for top in PRODUCT:
        for folder, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                if SOURCE.search(name):
                    full = os.path.join(folder, name)
                    yield os.path.relpath(full, root), open(full, encoding="utf-8").read()


def circles(graph):
    """Strongly connected components of more than one unit (Tarjan)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    problems, graph = [], {}
    for path, text in sources(root):
        layer = layer_of(path)
        if layer is None or layer == "":
            problems.append(f"{path}: its folder has no rule in LAYERS (tests/structure/check_layers.py)")
            continue
        for target in INCLUDE.findall(text):
            if target.startswith(("scripts/", "tests/")):
                problems.append(f"{path}: includes {target}: the product builds nothing from {target.split('/')[0]}/")
                continue
            if not target.startswith(PRODUCT):
                continue  # a system or library header
            if not os.path.exists(os.path.join(root, target)):
                problems.append(f"{path}: includes {target}, which does not exist")
                continue
            graph.setdefault(unit_of(path), set())
            if unit_of(target) != unit_of(path):
                graph[unit_of(path)].add(unit_of(target))
            to_layer = layer_of(target)
            if to_layer != layer and to_layer not in LAYERS[layer]:
                problems.append(f"{path}: includes {target}: {layer}/ may not reach up into {to_layer}/")
    for component in circles(graph):
        problems.append("include circle between " + ", ".join(component))
    for p in problems:
        print(p)
    print(f"check_layers: {len(graph)} units, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
