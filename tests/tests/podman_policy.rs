//! Podman's own signature policy, as `policy render-podman` renders it, enforced by
//! real podman (Debian 12's podman 4.3 as root) against a real registry.
//!
//! What this shows: under the rendered policy a fresh "guest" podman **refuses** an
//! unsigned image in a trusted scope ("a signature was required, but no signature
//! exists") and any image outside every scope (`default: reject`); the same pull
//! succeeds under a permissive policy (`insecureAcceptAnything`, the bypass the
//! end-to-end test simulates); and an exact `REPO@DIGEST` scope admits that one
//! digest while the rest of the repository stays refused (how a verifying pull gate
//! can admit a digest it has verified itself).
//!
//! What it cannot show here: podman **accepting** a signed image. Debian's
//! containers/image has sigstore verification patched out ("Debian-local change:
//! sigstore disabled"), so it rejects validly signed images too; Provenant's own
//! verifier and `guest-agent pull` are what accept signed images on these machines.
//! For the same reason the rule uses a single key and no Rekor requirement: podman
//! 4.3 rejects `keyPaths`, `fulcio` and `rekorPublicKeyPath` as unknown keys.
use std::path::Path;
use std::process::Output;

use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use policy::image::{ImagePolicy, ImageRule};
use policy::podman::{self, RenderInputs, Unpinnable};
use provenant_tests::podman::Podman;
use provenant_tests::registry::Registry;

/// Renders `policy` into `dir` the way `policy render-podman --out-dir DIR` does
/// (key material under `dir/keys`, referenced by absolute path); returns the policy
/// file's path.
fn render_into(policy: &ImagePolicy, files: &[(&str, Vec<u8>)], dir: &Path) -> String {
    let inputs = RenderInputs {
        install_dir: dir.to_str().unwrap().to_owned(),
        files: files.iter().map(|(p, d)| (p.into(), d.clone())).collect(),
        unpinnable: Unpinnable::Refuse,
    };
    let r = podman::render(policy, &inputs).expect("render");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    for (rel, data) in &r.files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let reg_d = dir.join(podman::REGISTRIES_D_FILE);
    std::fs::create_dir_all(reg_d.parent().unwrap()).unwrap();
    std::fs::write(&reg_d, &r.registries_d).unwrap();
    let p = dir.join(podman::POLICY_FILE);
    std::fs::write(&p, &r.policy_json).unwrap();
    p.to_str().unwrap().to_owned()
}

/// A guest podman whose per-user configuration (`$HOME/.config/containers`) holds
/// the rendered `registries.d`, as `/etc/containers/registries.d` would on a guest.
fn guest(dir: &Path, name: &str, registries_d: &Path) -> Podman {
    let g = Podman::new(dir, name, dir);
    let conf = g.dir.join("home/.config/containers/registries.d");
    std::fs::create_dir_all(&conf).unwrap();
    for e in std::fs::read_dir(registries_d).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, conf.join(p.file_name().unwrap())).unwrap();
    }
    g
}

fn pull(g: &Podman, policy: &str, image: &str) -> Output {
    g.cmd()
        .env("HOME", g.dir.join("home"))
        .args([
            "pull",
            "--tls-verify=false",
            "--signature-policy",
            policy,
            image,
        ])
        .output()
        .expect("run podman pull")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn has_image(g: &Podman, image: &str) -> bool {
    g.try_run(&["image", "exists", image]).status.success()
}

#[test]
fn rendered_policy_makes_real_podman_refuse_unsigned_images() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(dir.path(), dir.path());
    let builder = Podman::new(dir.path(), "builder", dir.path());
    builder.build_scratch("localhost/unsigned:1", "unsigned workload");
    let trusted = format!("{}/provenant/app:1", reg.host);
    let digest = builder.push("localhost/unsigned:1", &trusted);
    let outside = format!("{}/elsewhere/app:1", reg.host);
    builder.push("localhost/unsigned:1", &outside);

    // A key-based rule for the registry's provenant namespace, with a fresh key.
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let key_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
        .into_bytes();
    let image_policy = ImagePolicy {
        prefer_keyless: false,
        trust: vec![ImageRule {
            scope: format!("{}/provenant", reg.host),
            keys: vec!["cosign.pub".into()],
            keyless: None,
            rekor_key: None,
            require_rekor: false,
        }],
    };
    let rendered = dir.path().join("rendered");
    let policy_file = render_into(&image_policy, &[("cosign.pub", key_pem)], &rendered);
    let registries_d = rendered.join("registries.d");

    // 1. Refused: the trusted scope demands a signature and there is none.
    let g = guest(dir.path(), "guest", &registries_d);
    let o = pull(&g, &policy_file, &trusted);
    let e = stderr(&o);
    assert!(!o.status.success(), "an unsigned image was pulled: {e}");
    assert!(
        e.contains("A signature was required, but no signature exists"),
        "podman refused for another reason (is the rendered policy valid?): {e}"
    );
    assert!(!has_image(&g, &trusted));
    // By digest too.
    let by_digest = format!("{}/provenant/app@{digest}", reg.host);
    let o = pull(&g, &policy_file, &by_digest);
    assert!(stderr(&o).contains("no signature exists"), "{}", stderr(&o));

    // 2. Refused: outside every scope, `default: reject` applies.
    let o = pull(&g, &policy_file, &outside);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("rejected by policy"), "{e}");

    // 3. One verified digest admitted by an exact scope; the repository's other
    //    references stay under the signature rule.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&policy_file).unwrap()).unwrap();
    v["transports"]["docker"][&by_digest] = serde_json::json!([{"type": "insecureAcceptAnything"}]);
    let admit = dir.path().join("admit-digest.json");
    std::fs::write(&admit, v.to_string()).unwrap();
    let admit = admit.to_str().unwrap();
    let o = pull(&g, admit, &trusted);
    assert!(stderr(&o).contains("no signature exists"), "{}", stderr(&o));
    let o = pull(&g, admit, &by_digest);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(has_image(&g, &by_digest));

    // 4. The bypass: a permissive policy pulls the same unsigned image.
    let permissive = dir.path().join("permissive.json");
    std::fs::write(
        &permissive,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let bypass = guest(dir.path(), "bypass", &registries_d);
    let o = pull(&bypass, permissive.to_str().unwrap(), &trusted);
    assert!(o.status.success(), "{}", stderr(&o));
    let repo_digests = bypass.run(&["image", "inspect", &trusted, "--format", "{{.RepoDigests}}"]);
    assert!(repo_digests.contains(&digest), "{repo_digests}");

    // 5. Control: podman does read the guests' registries.d (so the pulls above
    //    parsed the rendered YAML): a corrupted copy breaks the same pull.
    let broken = dir.path().join("broken-registries.d");
    std::fs::create_dir_all(&broken).unwrap();
    let yaml = std::fs::read_to_string(registries_d.join("provenant.yaml")).unwrap();
    std::fs::write(broken.join("provenant.yaml"), format!("{yaml}  - [\n")).unwrap();
    let control = guest(dir.path(), "control", &broken);
    let o = pull(&control, permissive.to_str().unwrap(), &trusted);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("provenant.yaml"), "{}", stderr(&o));
}
