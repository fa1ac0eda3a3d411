#!/usr/bin/env python3
"""Fails if the crate's modules depend on each other in a cycle, at either
grain: between files under src/ (each a module), or between the crate's
top-level modules (a file's dependency is its top-level module's). Every
`crate::` and `super::` path is a dependency of the file that names it;
test code (tests.rs files, `#[cfg(test)] mod tests`) is left out. Run by
.ci/run; docs/ARCHITECTURE.md states the rule. `--layers` prints the
top-level modules bottom up."""
import collections
import os
import re
import sys


def module_files():
    files = {}
    for d, _, fs in os.walk('src'):
        for f in fs:
            if f.endswith('.rs'):
                p = os.path.join(d, f)[4:-3]
                if p.endswith('/mod'):
                    p = p[:-4]
                files[p.replace('/', '::')] = os.path.join(d, f)
    return files


def file_graph(files):
    mods = set(files)

    def resolve(path):
        parts = path.split('::')
        for i in range(len(parts), 0, -1):
            c = '::'.join(parts[:i])
            if c in mods:
                return c
        return None

    graph = collections.defaultdict(set)
    lines = collections.defaultdict(list)
    for m, f in files.items():
        if m.endswith('tests') or '::tests' in m or m in ('main', 'lib'):
            continue
        text = open(f).read()
        k = text.find('#[cfg(test)]\nmod tests')
        if k >= 0:
            text = text[:k]
        parent = m.rsplit('::', 1)[0] if '::' in m else ''
        for i, line in enumerate(text.splitlines()):
            if line.strip().startswith('//'):
                continue
            paths = re.findall(r'crate::((?:\w+::)*\w+)', line)
            paths += [(parent + '::' + p) if parent else p
                      for p in re.findall(r'\bsuper::((?:\w+::)*\w+)', line)]
            for p in paths:
                t = resolve(p)
                if t and t != m and not m.startswith(t + '::'):
                    graph[m].add(t)
                    lines[(m, t)].append(f'{files[m]}:{i + 1}')
    return graph, lines


def top_graph(graph, lines):
    top = collections.defaultdict(set)
    why = collections.defaultdict(list)
    for a, bs in list(graph.items()):
        for b in bs:
            ta, tb = a.split('::')[0], b.split('::')[0]
            if ta != tb:
                top[ta].add(tb)
                why[(ta, tb)] += lines[(a, b)]
    return top, why


def cycles(graph, nodes):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def layers(graph, nodes):
    """Top-level modules bottom up: each after everything it depends on."""
    depth = {}

    def d(v):
        if v not in depth:
            depth[v] = 1 + max((d(w) for w in graph[v]), default=-1)
        return depth[v]

    by = collections.defaultdict(list)
    for v in nodes:
        by[d(v)].append(v)
    return [sorted(by[k]) for k in sorted(by)]


def main():
    files = module_files()
    graph, lines = file_graph(files)
    top, why = top_graph(graph, lines)
    tops = {m.split('::')[0] for m in files} - {'main', 'lib'}
    failed = False
    for grain, g, w, nodes in (('file', graph, lines, files), ('top-level module', top, why, tops)):
        for comp in cycles(g, nodes):
            failed = True
            print(f'{grain} cycle: {" ".join(comp)}')
            for a in comp:
                for b in comp:
                    if b in g[a]:
                        print(f'   {a} -> {b}  ({", ".join(w[(a, b)][:3])})')
    if failed:
        sys.exit(1)
    if '--layers' in sys.argv:
        for i, layer in enumerate(layers(top, tops)):
            print(f'{i}: {" ".join(layer)}')


main()
