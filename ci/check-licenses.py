#!/usr/bin/env python3
"""Fail if any dependency of the workspace is GPL/AGPL/LGPL-only or unlicensed.

Provenant is Apache-2.0. This is the offline subset of `cargo deny check licenses`
(deny.toml holds the full policy for machines that have cargo-deny): it reads the
licence expression of every package in the resolved graph from `cargo metadata` and
refuses any expression that cannot be satisfied without a copyleft licence.
"""
import json
import os
import re
import subprocess
import sys

ALLOWED = {
    "Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Zlib", "Unicode-3.0",
    "Unicode-DFS-2016", "CC0-1.0", "Unlicense", "BSL-1.0", "MPL-2.0", "OpenSSL",
    "Apache-2.0 WITH LLVM-exception", "CDLA-Permissive-2.0", "0BSD", "bzip2-1.0.6",
    # University of Illinois/NCSA (permissive, BSD-like): LLVM's libFuzzer sources
    # in libfuzzer-sys, which only the fuzz/ crate uses.
    "NCSA",
    # MIT No Attribution (MIT without even the notice clause; OSI-approved):
    # borrow-or-share, under jsonschema, a test-only dependency (tests/openapi.rs).
    "MIT-0",
}


def satisfiable(expr: str) -> bool:
    """True if some choice in an SPDX OR/AND expression uses only allowed licences."""
    expr = expr.replace("/", " OR ")
    # Split on OR at top level (no nested parentheses in practice beyond one level).
    def eval_(e: str) -> bool:
        e = e.strip()
        while e.startswith("(") and e.endswith(")"):
            e = e[1:-1].strip()
        depth, parts, cur = 0, [], ""
        for tok in re.split(r"(\(|\)|\s+OR\s+)", e):
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1
            if depth == 0 and re.fullmatch(r"\s+OR\s+", tok or ""):
                parts.append(cur)
                cur = ""
            else:
                cur += tok or ""
        parts.append(cur)
        if len(parts) > 1:
            return any(eval_(p) for p in parts)
        ands = re.split(r"\s+AND\s+", e)
        if len(ands) > 1:
            return all(eval_(p) for p in ands)
        return e in ALLOWED
    return eval_(expr)


def check(manifest: str | None) -> tuple[list[str], int]:
    """Licence problems and the number of dependencies checked for one lock file."""
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked"]
    if manifest:
        cmd += ["--manifest-path", manifest]
    meta = json.loads(subprocess.check_output(cmd))
    members = set(meta["workspace_members"])
    resolved = {n["id"] for n in meta["resolve"]["nodes"]}
    bad = []
    for p in meta["packages"]:
        if p["id"] not in resolved or p["id"] in members:
            continue
        lic = p.get("license")
        if not lic:
            bad.append(f'{p["name"]} {p["version"]}: no SPDX licence field')
        elif not satisfiable(lic):
            bad.append(f'{p["name"]} {p["version"]}: {lic}')
    return bad, len(resolved - members)


def main() -> int:
    # The workspace, and the cargo-fuzz crate, which the workspace excludes and which
    # has its own Cargo.lock (its dependencies never ship, but they are still ours to
    # vet).
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    manifests = [None]
    fuzz = os.path.join(root, "fuzz", "Cargo.toml")
    if os.path.exists(fuzz):
        manifests.append(fuzz)
    bad, checked = [], 0
    for m in manifests:
        b, n = check(m)
        bad += b
        checked += n
    if bad:
        print("dependencies with licences Provenant (Apache-2.0) cannot ship:")
        print("\n".join("  " + b for b in sorted(set(bad))))
        return 1
    print(f"licences ok: {checked} dependencies checked ({len(manifests)} lock files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
