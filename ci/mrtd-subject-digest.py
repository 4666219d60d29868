#!/usr/bin/env python3
"""Print the attestation subject digest of a measurement manifest.

Usage: ci/mrtd-subject-digest.py MANIFEST.json   ->   sha256:<64 hex>

The subject is `tdx-mrtd` and its digest is the SHA-256 of the 48 raw MRTD bytes
(not of the hex text, not of the manifest): GitHub's attestation API indexes
subjects by sha256 while MRTD is SHA-384, so the control plane computes
sha256(MRTD) from a quote and looks that up (DESIGN.md, "Build provenance for MRTD").
This is a second implementation of cp_verifier::measure::mrtd_subject_digest; a test
checks that the two agree.
"""
import hashlib
import json
import re
import sys


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        manifest = json.load(f)
    mrtd = manifest.get("mrtd") if isinstance(manifest, dict) else None
    if not isinstance(mrtd, str) or not re.fullmatch(r"[0-9a-f]{96}", mrtd):
        print(f"{sys.argv[1]}: \"mrtd\" is not 96 lowercase hex digits", file=sys.stderr)
        return 1
    print("sha256:" + hashlib.sha256(bytes.fromhex(mrtd)).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
