#!/usr/bin/env python3
"""Fails on a module cycle in shared/, ws-server/ and fcgi-publisher/.

A module is x.c plus x.h in one folder (either may be missing). There is an arrow from
module x to module y when x.c or x.h includes "y.h". Header names must be
unique across the three folders, so an include names one module.
Run by `make test` (stage "build"); prints every cycle found.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ("shared", "ws-server", "fcgi-publisher")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def modules():
    mods, headers, errors = {}, {}, []
    for folder in FOLDERS:
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            base, ext = os.path.splitext(name)
            if ext not in (".c", ".h"):
                continue
            key = f"{folder}/{base}"
            mods.setdefault(key, []).append(os.path.join(folder, name))
            if ext == ".h":
                if name in headers:
                    errors.append(f"header {name} exists as {headers[name]}.h and {key}.h")
                headers[name] = key
    return mods, headers, errors


def main():
    mods, headers, errors = modules()
    edges = {m: set() for m in mods}
    for m, files in mods.items():
        for path in files:
            with open(os.path.join(ROOT, path), encoding="utf-8") as f:
                for inc in INCLUDE.findall(f.read()):
                    target = headers.get(os.path.basename(inc))
                    if target is None:
                        errors.append(f"{path}: includes \"{inc}\", not a header of {', '.join(FOLDERS)}")
                    elif target != m:
                        edges[m].add(target)
    # Tarjan's strongly connected components: any component of more than
    # one module is a cycle.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    for comp in sccs:
        arrows = [f"{a} -> {b}" for a in comp for b in sorted(edges[a]) if b in comp]
        errors.append("module cycle among " + ", ".join(comp) + ": " + "; ".join(arrows))
    for e in errors:
        print("check-modules: " + e, file=sys.stderr)
    if errors:
        return 1
    print(f"check-modules: {len(mods)} modules, {sum(len(e) for e in edges.values())} arrows, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
