#!/usr/bin/env python3
"""Checks the layout rules of the source tree (docs/design.md, "Reading the code").

1. Layers point down only. The engine's private components, lowest first:
     util < io < log < index < core < {fsck, capi, control}
   A file includes headers of its own layer or lower ones (public headers under
   engine/include/spool/ are usable from every layer), never from tools/, bench/ or tests/.
2. No file under engine/ is longer than MAX_LINES.
3. Nothing in the tree refers to documents or history a reader does not have: the project's
   contract lives in docs/, its history in git.

Usage: check_tree.py ROOT. Prints one line per violation; exits 1 if there is any.
"""
import os
import re
import subprocess
import sys

LAYERS = {"util": 0, "io": 1, "log": 2, "index": 3, "core": 4,
          "fsck": 5, "capi": 5, "control": 5}
MAX_LINES = 800
OUTSIDE = ("tools", "bench", "tests")
# Built from pieces so that this file does not match itself.
FORBIDDEN = re.compile("SPEC " + "§|[Ss]ession [0-9]|[Ii]ssue [0-9]")


def tracked_files(root):
    out = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout: every file
        files = []
        for d, _, names in os.walk(root):
            if "/.git" in d or "/build" in d:
                continue
            files += [os.path.relpath(os.path.join(d, n), root) for n in names]
        return files
    return out.stdout.split()


def main():
    root = sys.argv[1]
    problems = []
    for rel in tracked_files(root):
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(lines, 1):
            if FORBIDDEN.search(line):
                problems.append(f"{rel}:{n}: refers to something outside the repository: "
                                f"{line.strip()[:80]}")
        parts = rel.split("/")
        if parts[0] != "engine" or not rel.endswith((".h", ".cc", ".c")):
            continue
        if len(lines) > MAX_LINES:
            problems.append(f"{rel}: {len(lines)} lines, over {MAX_LINES}")
        if parts[1] == "include" or parts[1] not in LAYERS:
            continue
        mine = LAYERS[parts[1]]
        for n, line in enumerate(lines, 1):
            m = re.match(r'#include "(\w+)/', line)
            if not m:
                continue
            top = m.group(1)
            if top in OUTSIDE or (top in LAYERS and LAYERS[top] > mine):
                problems.append(f"{rel}:{n}: {parts[1]}/ includes a header of a layer above "
                                f"it: {line.strip()}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
