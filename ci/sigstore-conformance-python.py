#!/usr/bin/env python3
"""Runs the sigstore-conformance bundle-verify cases that signatures/tests/conformance.rs
runs, through sigstore-python's verifier, and prints one line per case:

    <case> <TAB> verified|refused|unsupported <TAB> <exception type: message>

Usage (after ci/install-sigstore-python.sh):

    target/sigstore-python/bin/python ci/sigstore-conformance-python.py \
        [signatures/tests/data/sigstore-conformance]

It follows the suite's README (the case directory's trusted_root.json or the
public-good one, its identity/issuer files or the defaults, its artifact or
../a.txt). sigstore-python's verifier checks the log entry's times against the
wall clock, not a given time; every case here is in the past. It has no
managed-key (key.pub) verification: those cases print `unsupported`. For DSSE
bundles it runs verify_dsse and then compares the statement's subjects with
sha256(artifact), as the suite's sigstore-python client does.
"""

import hashlib
import json
import sys
from pathlib import Path

from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier, policy

DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"


def run(case: Path, base: Path) -> tuple[str, str]:
    if (case / "key.pub").exists():
        return "unsupported", "no managed-key verification in sigstore-python"
    root_path = case / "trusted_root.json"
    if not root_path.exists():
        root_path = base / "trusted_root.public-good.json"
    artifact = case / "artifact"
    if not artifact.exists():
        artifact = base / "bundle-verify" / "a.txt"
    identity = (case / "identity").read_text().strip() if (case / "identity").exists() else DEFAULT_IDENTITY
    issuer = (case / "issuer").read_text().strip() if (case / "issuer").exists() else DEFAULT_ISSUER
    try:
        verifier = Verifier(trusted_root=TrustedRoot.from_file(str(root_path)))
        bundle = Bundle.from_json((case / "bundle.sigstore.json").read_bytes())
        pol = policy.Identity(identity=identity, issuer=issuer)
        data = artifact.read_bytes()
        if bundle._dsse_envelope is not None:
            _, payload = verifier.verify_dsse(bundle, pol)
            digest = hashlib.sha256(data).hexdigest()
            subjects = json.loads(payload).get("subject", [])
            if not any(s.get("digest", {}).get("sha256") == digest for s in subjects):
                return "refused", "SubjectMismatch: no subject has the artifact's sha256"
        else:
            verifier.verify_artifact(data, bundle, pol)
    except Exception as e:  # noqa: BLE001 - every refusal is reported, whatever its type
        msg = " ".join(str(e).split())[:200]
        return "refused", f"{type(e).__name__}: {msg}"
    return "verified", ""


def main() -> None:
    base = Path(sys.argv[1] if len(sys.argv) > 1 else "signatures/tests/data/sigstore-conformance")
    for case in sorted(p for p in (base / "bundle-verify").iterdir() if p.is_dir()):
        outcome, why = run(case, base)
        print(f"{case.name}\t{outcome}\t{why}")


if __name__ == "__main__":
    main()
