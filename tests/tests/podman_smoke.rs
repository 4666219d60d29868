//! The podman harness itself, against real podman and a real registry: an image
//! built by one installation and pulled by another runs, and the guest's store knows
//! exactly the digest the registry serves.
use provenant_tests::podman::Podman;
use provenant_tests::registry::Registry;

#[test]
fn build_push_pull_run_and_api() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(dir.path(), dir.path());
    let builder = Podman::new(dir.path(), "builder", dir.path());
    builder.build_scratch("localhost/smoke:1", "smoke");
    let remote = format!("{}/smoke/app:1", reg.host);
    let digest = builder.push("localhost/smoke:1", &remote);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    let mut guest = Podman::new(dir.path(), "guest", dir.path());
    guest.run(&["pull", "-q", "--tls-verify=false", &remote]);
    let repo_digests = guest.run(&["image", "inspect", &remote, "--format", "{{.RepoDigests}}"]);
    assert!(
        repo_digests.contains(&digest),
        "{repo_digests} lacks {digest}"
    );
    guest.run(&["run", "-d", "--name", "app", "--network", "none", &remote]);
    let sock = guest.start_service();
    let out = std::process::Command::new("curl")
        .args(["-sf", "--unix-socket", sock.to_str().unwrap()])
        .arg("http://d/v4.0.0/libpod/containers/app/json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["ImageDigest"], digest.as_str());
}
