//! Cross-implementation truth: every bundle the TEST signer makes verifies with
//! sigstore-python (PyPI `sigstore` 4.5.1), fully offline, against the TEST trust config,
//! and tampered or mis-identified copies fail.
//!
//! The CLI comes from `ci/install-sigstore-python.sh` (which `.ci/run` calls) at
//! `target/sigstore-python/bin/sigstore`, or from `$SIGSTORE_PYTHON_CLI`. A missing CLI
//! fails these tests: they never skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use sigstore_testsign::{keys, Identity, SignOptions, TestSigstore};

fn cli() -> PathBuf {
    let path = std::env::var_os("SIGSTORE_PYTHON_CLI").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sigstore-python/bin/sigstore"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "sigstore-python CLI not found at {}: run ci/install-sigstore-python.sh \
         (or set SIGSTORE_PYTHON_CLI)",
        path.display()
    );
    path
}

struct Outcome {
    ok: bool,
    output: String,
}

/// `sigstore --trust-config TEST verify <args…> --offline --bundle B <artifact>`.
fn verify(bundle: &[u8], subcommand: &[&str], artifact: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let bundle_path = dir.path().join("bundle.sigstore.json");
    std::fs::write(&bundle_path, bundle).unwrap();
    let out = Command::new(cli())
        .arg("--trust-config")
        .arg(keys::trust_config_path())
        .arg("verify")
        .args(subcommand)
        .arg("--offline")
        .arg("--bundle")
        .arg(&bundle_path)
        .arg(artifact)
        .current_dir(dir.path())
        .output()
        .unwrap();
    Outcome {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn identity_args(id: &Identity) -> Vec<String> {
    vec![
        "identity".into(),
        "--cert-identity".into(),
        id.san(),
        "--cert-oidc-issuer".into(),
        id.issuer.clone(),
    ]
}

fn github_args(id: &Identity) -> Vec<String> {
    vec![
        "github".into(),
        "--cert-identity".into(),
        id.san(),
        "--repository".into(),
        id.repository.clone(),
        "--ref".into(),
        id.git_ref.clone(),
        "--sha".into(),
        id.sha.clone(),
        "--trigger".into(),
        id.event_name.clone(),
        "--name".into(),
        id.workflow_name.clone(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn assert_ok(o: &Outcome, what: &str) {
    assert!(o.ok, "{what}: sigstore-python rejected it:\n{}", o.output);
}

fn assert_fails(o: &Outcome, what: &str) {
    assert!(!o.ok, "{what}: sigstore-python accepted it:\n{}", o.output);
}

#[test]
fn bundles_verify_with_sigstore_python_by_identity_and_github_claims() {
    let signer = TestSigstore::load().unwrap();
    let (mrtd_att, mrtd_digest) = mrtd_attestation(&[0x5a; 48]);
    let artifact = b"the cp-verifier release binary".to_vec();
    let (bin_att, _) = binary_attestation(&artifact);
    let cases = [
        ("MRTD, now", &mrtd_att, release_identity(), recent()),
        (
            "MRTD, 2025-06-01",
            &mrtd_att,
            release_identity(),
            FIXED_TIME,
        ),
        (
            "binary, reusable workflow",
            &bin_att,
            reusable_identity(),
            recent(),
        ),
    ];
    for (name, att, id, at) in &cases {
        let bundle = signer.sign_attestation(att, id, *at).unwrap();
        let digest = format!("sha256:{}", att.subjects.last().unwrap().digests[0].1);
        assert_ok(&verify(&bundle, &strs(&identity_args(id)), &digest), name);
        assert_ok(&verify(&bundle, &strs(&github_args(id)), &digest), name);
    }

    // The artifact given as a file rather than a digest.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cp-verifier");
    std::fs::write(&file, &artifact).unwrap();
    let id = reusable_identity();
    let bundle = signer.sign_attestation(&bin_att, &id, recent()).unwrap();
    assert_ok(
        &verify(&bundle, &strs(&identity_args(&id)), file.to_str().unwrap()),
        "artifact file",
    );

    // A digest that is no subject of the statement.
    let bundle = signer
        .sign_attestation(&mrtd_att, &release_identity(), recent())
        .unwrap();
    let other = format!("sha256:{}", "ab".repeat(32));
    assert_ne!(other, format!("sha256:{mrtd_digest}"));
    assert_fails(
        &verify(&bundle, &strs(&identity_args(&release_identity())), &other),
        "digest not among the subjects",
    );
}

#[test]
fn sigstore_python_rejects_wrong_identities() {
    let signer = TestSigstore::load().unwrap();
    let (att, digest) = mrtd_attestation(&[7; 48]);
    let digest = format!("sha256:{digest}");
    let good = release_identity();
    let bundle = signer.sign_attestation(&att, &good, recent()).unwrap();

    // Policy asks for another workflow, repository, issuer, ref.
    let mut wrong_workflow = good.clone();
    wrong_workflow.workflow_path = ".github/workflows/evil.yml".into();
    let mut wrong_repo = good.clone();
    wrong_repo.repository = "provenant/other".into();
    let mut wrong_issuer = good.clone();
    wrong_issuer.issuer = "https://accounts.google.com".into();
    let mut wrong_ref = good.clone();
    wrong_ref.git_ref = "refs/heads/dev".into();
    for (name, policy) in [("workflow", &wrong_workflow), ("issuer", &wrong_issuer)] {
        assert_fails(
            &verify(&bundle, &strs(&identity_args(policy)), &digest),
            name,
        );
    }
    // `verify github` has no workflow-path option: the workflow is pinned by the SAN.
    for (name, policy) in [("repository", &wrong_repo), ("ref", &wrong_ref)] {
        let mut args = github_args(policy);
        // Keep the SAN right so only the GitHub claim differs.
        args[2] = good.san();
        assert_fails(&verify(&bundle, &strs(&args), &digest), name);
    }

    // A bundle signed by the wrong workflow, verified under the right policy.
    let evil = signer
        .sign_attestation(&att, &wrong_workflow, recent())
        .unwrap();
    assert_fails(
        &verify(&evil, &strs(&identity_args(&good)), &digest),
        "bundle from the wrong workflow",
    );
    let mut evil_runner = good.clone();
    evil_runner.repository = "attacker/guest-image".into();
    let evil = signer
        .sign_attestation(&att, &evil_runner, recent())
        .unwrap();
    assert_fails(
        &verify(&evil, &strs(&github_args(&good)), &digest),
        "bundle from the wrong repository",
    );
}

#[test]
fn sigstore_python_rejects_tampered_bundles() {
    let signer = TestSigstore::load().unwrap();
    let (att, digest) = mrtd_attestation(&[9; 48]);
    let digest = format!("sha256:{digest}");
    let id = release_identity();
    let args = identity_args(&id);
    let bundle = signer.sign_attestation(&att, &id, recent()).unwrap();
    assert_ok(&verify(&bundle, &strs(&args), &digest), "untampered");
    for (name, bad) in tampered(&bundle) {
        assert_fails(&verify(&bad, &strs(&args), &digest), name);
    }

    // Checkpoint and SET signed by a key that is not the trusted Rekor key.
    let rogue = ring_p256_pkcs8_pem();
    let rogue_signer = TestSigstore::load()
        .unwrap()
        .with_rekor_signing_key(&rogue)
        .unwrap();
    let bad = rogue_signer.sign_attestation(&att, &id, recent()).unwrap();
    assert_fails(&verify(&bad, &strs(&args), &digest), "wrong Rekor key");

    // Signed after the certificate expired (integrated time past notAfter) is
    // impossible to make with the signer's options, but a signing time in the future is.
    let future = signer
        .sign_attestation_with(&att, &id, &SignOptions::at(recent() + 3600))
        .unwrap();
    let o = verify(&future.json, &strs(&args), &digest);
    eprintln!(
        "future integrated time, sigstore-python ok={}: {}",
        o.ok, o.output
    );
}

/// What sigstore-python does with bundles that break rules it may or may not check.
/// Each expectation was observed, and is asserted so a change in either side shows.
#[test]
fn sigstore_python_on_sct_set_and_time_edge_cases() {
    let signer = TestSigstore::load().unwrap();
    let (att, digest) = mrtd_attestation(&[3; 48]);
    let digest = format!("sha256:{digest}");
    let id = release_identity();
    let args = identity_args(&id);

    let forged_sct = TestSigstore::load()
        .unwrap()
        .with_ctlog_signing_key(&ring_p256_pkcs8_pem())
        .unwrap()
        .sign_attestation(&att, &id, recent())
        .unwrap();
    let o = verify(&forged_sct, &strs(&args), &digest);
    assert_fails(&o, "SCT signed by a key that is not the CT log's");
    assert!(o.output.contains("failed to verify SCT"), "{}", o.output);

    let mut opts = SignOptions::at(recent());
    opts.embed_sct = false;
    let no_sct = signer.sign_attestation_with(&att, &id, &opts).unwrap();
    let o = verify(&no_sct.json, &strs(&args), &digest);
    assert_fails(&o, "no SCT");
    assert!(o.output.contains("failed to verify SCT"), "{}", o.output);

    let mut opts = SignOptions::at(recent());
    opts.inclusion_promise = false;
    let no_set = signer.sign_attestation_with(&att, &id, &opts).unwrap();
    // sigstore-python refuses a Rekor v1 entry without an inclusion promise as a
    // malformed bundle (it needs the SET to trust the integrated time).
    let o = verify(&no_set.json, &strs(&args), &digest);
    assert_fails(&o, "no SET");
    assert!(o.output.contains("malformed"), "{}", o.output);

    let future = signer.sign_attestation(&att, &id, recent() + 3600).unwrap();
    // NOT CHECKED by sigstore-python 4.5.1: an integrated time an hour in the future
    // (the SET signs it and the certificate covers it) passes. sigstore-verify refuses
    // it (tests/sigstore_verify.rs). If this starts failing, sigstore-python added the
    // check: flip the assertion.
    let o = verify(&future, &strs(&args), &digest);
    assert_ok(
        &o,
        "integrated time in the future (sigstore-python does not check)",
    );
}
