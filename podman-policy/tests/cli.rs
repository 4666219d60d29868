//! The `policy` binary: exit codes, output files, and the checked-in rendered example
//! (`podman-policy/files/rendered`) staying equal to a fresh render.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn policy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_policy"))
        .args(args)
        .output()
        .expect("run policy")
}

fn files() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("files")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir`, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn the_checked_in_example_equals_a_fresh_render() {
    let out = tempfile::tempdir().unwrap();
    let config = files().join("image-policy.toml");
    let o = policy(&[
        "render-podman",
        "--config",
        s(&config),
        "--out-dir",
        s(out.path()),
        "--install-dir",
        "/etc/containers/provenant",
        "--reject-unpinnable",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("rendered as reject"), "{stderr}");
    let fresh = tree(out.path());
    let shipped = tree(&files().join("rendered"));
    assert_eq!(
        fresh.keys().collect::<Vec<_>>(),
        shipped.keys().collect::<Vec<_>>(),
        "podman-policy/files/rendered is stale: re-render it (see podman-policy/files/README.md)"
    );
    for (k, v) in &fresh {
        assert!(
            v == &shipped[k],
            "podman-policy/files/rendered/{k} is stale: re-render it (see podman-policy/files/README.md)"
        );
    }
    // The shape the README promises.
    let v: serde_json::Value = serde_json::from_slice(&fresh["containers-policy.json"]).unwrap();
    assert_eq!(v["default"][0]["type"], "reject");
    assert_eq!(
        v["transports"]["docker"]["ghcr.io/provenant"][0]["type"],
        "reject"
    );
    assert_eq!(
        v["transports"]["docker"]["registry.example.com/vendor"][0]["signedIdentity"]["type"],
        "matchRepository"
    );
}

#[test]
fn a_workflow_identity_is_refused_without_the_flag_and_nothing_is_written() {
    let out = tempfile::tempdir().unwrap();
    let config = files().join("image-policy.toml");
    let o = policy(&[
        "render-podman",
        "--config",
        s(&config),
        "--out-dir",
        s(out.path()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("[unpinnable_identity]"), "{stderr}");
    assert!(stderr.contains("--reject-unpinnable"), "{stderr}");
    assert!(tree(out.path()).is_empty());
}

#[test]
fn default_install_dir_is_the_absolute_output_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(files().join("vendor-cosign.pub"), dir.path().join("k.pub")).unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[[trust]]\nscope = \"127.0.0.1:5000/x\"\nkeys = [\"k.pub\"]\nrequire_rekor = false\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = policy(&[
        "render-podman",
        "--config",
        s(&dir.path().join("p.toml")),
        "--out-dir",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "no warnings for a plain keyPath policy"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("containers-policy.json")).unwrap())
            .unwrap();
    let key = v["transports"]["docker"]["127.0.0.1:5000/x"][0]["keyPath"]
        .as_str()
        .unwrap();
    assert_eq!(Path::new(key), out.join("keys/00-127.0.0.1_5000_x.pub"));
    assert_eq!(
        std::fs::read(key).unwrap(),
        std::fs::read(files().join("vendor-cosign.pub")).unwrap()
    );
    assert!(out.join("registries.d/provenant.yaml").is_file());
}

#[test]
fn check_and_exit_codes() {
    let example = files().join("image-policy.toml");
    let o = policy(&["check", "--config", s(&example)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: 3 trust rule(s)"));

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // Invalid policy: 1.
    let both = write(
        "both.toml",
        "[[trust]]\nscope = \"a.io/x\"\nkeys = [\"k.pub\"]\n",
    );
    let o = policy(&["check", "--config", s(&both)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rekor_key"));
    let typo = write("typo.toml", "[[trust]]\nscope = \"a.io/x\"\nkey = []\n");
    assert_eq!(
        policy(&["check", "--config", s(&typo)]).status.code(),
        Some(1)
    );
    write("not-a-key.pub", "hello\n");
    let p = write(
        "badkey.toml",
        "[[trust]]\nscope = \"a.io/x\"\nkeys = [\"not-a-key.pub\"]\nrequire_rekor = false\n",
    );
    let o = policy(&["check", "--config", s(&p)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("[bad_key]"));
    // I/O: 2 (missing config, missing key file); usage: 2.
    assert_eq!(
        policy(&["check", "--config", s(&dir.path().join("absent.toml"))])
            .status
            .code(),
        Some(2)
    );
    let p = write(
        "nokey.toml",
        "[[trust]]\nscope = \"a.io/x\"\nkeys = [\"absent.pub\"]\nrequire_rekor = false\n",
    );
    let o = policy(&["check", "--config", s(&p)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("absent.pub"));
    assert_eq!(policy(&["render-podman"]).status.code(), Some(2));
    assert_eq!(policy(&["frobnicate"]).status.code(), Some(2));
}
