#!/usr/bin/env python3
"""Compiles every translation unit of ours as a Release build would (-O3
-DNDEBUG, no -g) with its -Werror, from a configured build's
compile_commands.json, without linking: GCC's optimizer-driven warnings
(-Wrestrict, -Warray-bounds, -Wmaybe-uninitialized...) differ between -O2,
which the default RelWithDebInfo build uses, and -O3, and a Release build must
stay clean. Generated protobuf code is skipped (not built with -Werror).

  release_check.py BUILD_DIR [JOBS]    exit 0 clean, 1 with the first errors
"""
import json
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

build = sys.argv[1]
jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
only = os.environ.get("RELEASE_CHECK_ONLY", "")  # a regex on file names, to re-check a few
units = [u for u in json.load(open(os.path.join(build, "compile_commands.json")))
         if "-Werror" in u["command"] and not u["file"].endswith(".pb.cc") and re.search(only, u["file"])]


def release(command):
    args = shlex.split(command)
    out = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "-o":
            out += ["-o", "/dev/null"]
            skip = True
        elif re.fullmatch(r"-O[0-3s]|-g[0-9]?|-fsanitize.*|--coverage", a):
            continue
        else:
            out.append(a)
    return out[:1] + ["-O3", "-DNDEBUG"] + out[1:]


def compile_one(u):
    r = subprocess.run(release(u["command"]), cwd=u["directory"], capture_output=True, text=True)
    return u["file"], r.returncode, r.stderr


start = time.time()
failed = []
with ThreadPoolExecutor(jobs) as pool:
    for f, rc, err in pool.map(compile_one, units):
        if rc != 0:
            failed.append((f, err))
print(f"{len(units)} translation units at -O3 -DNDEBUG -Werror in {time.time() - start:.0f} s: "
      f"{len(failed)} failed")
for f, err in failed:
    first = [l for l in err.splitlines() if "error:" in l or "warning:" in l][:2]
    print(f"---- {f}")
    for l in first:
        print("  " + l[-300:])
sys.exit(1 if failed else 0)
