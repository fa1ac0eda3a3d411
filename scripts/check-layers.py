#!/usr/bin/env python3
"""Fails if the crate's modules (each file under src/) depend on each other
in a cycle: every `crate::` and `super::` path is a dependency of the file
that names it; test code (tests.rs files, `#[cfg(test)] mod tests`) is left
out. Run by .ci/run; docs/ARCHITECTURE.md states the rule."""
import os,re,sys,collections
# file-level module graph: module path = path under src without .rs / mod.rs
files={}
for d,_,fs in os.walk('src'):
    for f in fs:
        if f.endswith('.rs'):
            p=os.path.join(d,f)[4:-3]
            if p.endswith('/mod'): p=p[:-4]
            files[p.replace('/','::')]=os.path.join(d,f)
mods=set(files)
def resolve(path):
    # longest prefix that is a module
    parts=path.split('::')
    for i in range(len(parts),0,-1):
        c='::'.join(parts[:i])
        if c in mods: return c
    return None
g=collections.defaultdict(set); ev=collections.defaultdict(list)
for m,f in files.items():
    if m.endswith('tests') or '::tests' in m or m in('main','lib'): continue
    txt=open(f).read()
    # drop #[cfg(test)] mod tests {...} crudely: cut at '#[cfg(test)]\nmod tests'
    k=txt.find('#[cfg(test)]\nmod tests')
    if k>=0: txt=txt[:k]
    for i,line in enumerate(txt.splitlines()):
        if line.strip().startswith('//'): continue
        for p in re.findall(r'crate::((?:\w+::)*\w+)',line):
            t=resolve(p)
            if t and t!=m and not m.startswith(t+'::') :
                g[m].add(t); ev[(m,t)].append(i+1)
        # use super:: relative
        for p in re.findall(r'\bsuper::((?:\w+::)*\w+)',line):
            base=m.rsplit('::',1)[0] if '::' in m else ''
            # super of a file module m = parent
            full=(base+'::'+p) if base else p
            t=resolve(full)
            if t and t!=m and not m.startswith(t+'::'): g[m].add(t); ev[(m,t)].append(i+1)
# tarjan
idx={};low={};st=[];on=set();sccs=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in g[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        sccs.append(comp)
for v in list(mods):
    if v not in idx: sc(v)
cycles=[c for c in sccs if len(c)>1]
for comp in cycles:
    if True:
        print("SCC:",sorted(comp))
        for a in sorted(comp):
            for b in sorted(comp):
                if b in g[a]: print(f"   {a} -> {b} {ev[(a,b)][:4]}")
sys.exit(1 if cycles else 0)
