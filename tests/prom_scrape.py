#!/usr/bin/env python3
"""Scrapes a fortmesh metrics page and checks it (tests/maintainer/metrics_test.sh,
tests/e2e/relay_test.sh). Run it with Debian's /usr/bin/python3, where
python3-prometheus-client lives.

  prom_scrape.py [--doc docs/metrics.md] HOST:PORT EXPR...

GETs http://HOST:PORT/metrics, parses it with prometheus_client's text
parser, checks every family has HELP, then evaluates each EXPR, a Python
expression over m (sample name -> {sorted label tuple: value}) and
v(name, **labels); with --doc, also that every family is in that file's
tables. Exit 0 if all hold, else 1 with the page printed."""
import re
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

args = sys.argv[1:]
doc = None
if args[:1] == ["--doc"]:
    doc, args = args[1], args[2:]
where, exprs = args[0], args[1:]
with urllib.request.urlopen(f"http://{where}/metrics", timeout=5) as r:
    assert r.status == 200, r.status
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
    text = r.read().decode()
m = {}
families = []
for fam in text_string_to_metric_families(text):
    assert fam.documentation, f"{fam.name} has no HELP"
    families.append(fam.name)
    for s in fam.samples:  # by sample name: the parser drops a counter family's _total
        m.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value


def v(_family, **labels):
    return m[_family][tuple(sorted(labels.items()))]


if doc is not None:
    listed = open(doc).read()
    missing = [f for f in families if not re.search(r"\| `" + f + r"(_total)?` \|", listed)]
    if missing:
        print(f"not in {doc}: {missing}")
        sys.exit(1)
for expr in exprs:
    if not eval(expr):
        print(f"does not hold: {expr}\n{text}")
        sys.exit(1)
print(f"ok: {len(m)} families")
