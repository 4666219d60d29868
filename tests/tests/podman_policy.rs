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
//! The test does sign the image (a cosign simple-signing signature by the policy's
//! key, stored as cosign stores it) to show that podman finds it through the rendered
//! `registries.d` and then fails with that patch's error, not "no signature".
//! For the same reason the rule uses a single key and no Rekor requirement: podman
//! 4.3 rejects `keyPaths`, `fulcio` and `rekorPublicKeyPath` as unknown keys.
use std::path::Path;
use std::process::Output;

use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use podman_policy::{RenderInputs, Unpinnable};
use policy::image::{ImagePolicy, ImageRule};
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
    let r = podman_policy::render(policy, &inputs).expect("render");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    for (rel, data) in &r.files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let reg_d = dir.join(podman_policy::REGISTRIES_D_FILE);
    std::fs::create_dir_all(reg_d.parent().unwrap()).unwrap();
    std::fs::write(&reg_d, &r.registries_d).unwrap();
    let p = dir.join(podman_policy::POLICY_FILE);
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

/// Stores a cosign (legacy, simple-signing) signature of `digest` in the registry,
/// as `cosign sign --key` does: an OCI manifest tagged `sha256-<hex>.sig` whose layer
/// is the payload, with the base64 ECDSA signature in its annotation.
fn push_cosign_signature(registry: &str, repo: &str, digest: &str, key: &p256::ecdsa::SigningKey) {
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    use sha2::Digest as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let host_repo = format!("{}/{repo}", registry.trim_start_matches("http://"));
    let payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": host_repo},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap();
    let sig: p256::ecdsa::Signature = key.sign(&payload);
    let config =
        br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let http = reqwest::blocking::Client::new();
    let blob_digest = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    for blob in [&payload[..], &config[..]] {
        let r = http
            .post(format!("{registry}/v2/{repo}/blobs/uploads/"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "start upload");
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let loc = if loc.starts_with('/') {
            format!("{registry}{loc}")
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = http
            .put(format!("{loc}{sep}digest={}", blob_digest(blob)))
            .header("content-type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "finish upload");
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": blob_digest(config)
        },
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": payload.len(),
            "digest": blob_digest(&payload),
            "annotations": {"dev.cosignproject.cosign/signature": b64.encode(sig.to_der().as_bytes())}
        }]
    });
    let tag = digest.replace(':', "-") + ".sig";
    let r = http
        .put(format!("{registry}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "signature manifest");
}

/// The two tests run one at a time: podman instances with separate storage still
/// share the engine's temporary directory (/run/libpod), and the harness resets
/// each instance when it is dropped.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn has_image(g: &Podman, image: &str) -> bool {
    g.try_run(&["image", "exists", image]).status.success()
}

#[test]
fn rendered_policy_makes_real_podman_refuse_unsigned_images() {
    let _serial = serial();
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

    // 5. Signed (with the very key the policy names): podman finds the signature
    //    through the rendered registries.d (`use-sigstore-attachments`), and Debian's
    //    build then refuses it anyway, with its patch's error (a podman with sigstore
    //    support accepts it). Without the registries.d file, podman does not look.
    push_cosign_signature(&reg.url(), "provenant/app", &digest, &key);
    let signed = guest(dir.path(), "signed", &registries_d);
    let o = pull(&signed, &policy_file, &trusted);
    let e = stderr(&o);
    assert!(
        !e.contains("no signature exists"),
        "the signature was not found: {e}"
    );
    if o.status.success() {
        // A podman built with sigstore support verified it under the rendered policy.
        assert!(has_image(&signed, &trusted));
    } else {
        assert!(e.contains("sigstore disabled"), "{e}");
    }
    let empty = dir.path().join("empty-registries.d");
    std::fs::create_dir_all(&empty).unwrap();
    let blind = guest(dir.path(), "blind", &empty);
    let o = pull(&blind, &policy_file, &trusted);
    assert!(stderr(&o).contains("no signature exists"), "{}", stderr(&o));

    // 6. Control: podman does read the guests' registries.d (so the pulls above
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

/// The release image scripts, run for real against podman and the local registry:
/// `ci/pin-bases.sh` pins a base by digest, `ci/build-images.sh` refuses placeholder
/// pins and binaries that do not match `SHA256SUMS`, then builds all three
/// Containerfiles and pushes them, reporting the digests the registry serves. The
/// bases are stand-ins (a `FROM scratch` busybox image in the local registry, since
/// this machine has no route to Docker Hub), and so are the release binaries (a copy
/// of the static busybox: the images' layout is what is checked here, not the agent).
#[test]
fn release_image_scripts_pin_build_and_push() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(dir.path(), dir.path());
    let builder = Podman::new(dir.path(), "builder", dir.path());
    builder.build_scratch("localhost/stand-in-base:1", "stand-in base");
    let base_tag = format!("{}/bases/busybox:1", reg.host);
    let base_digest = builder.push("localhost/stand-in-base:1", &base_tag);
    let registries_conf = dir.path().join("registries.conf");
    std::fs::write(
        &registries_conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.host
        ),
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let engine = format!(
        "podman --root {} --runroot {} --runtime runc --cgroup-manager cgroupfs",
        builder.dir.join("root").display(),
        builder.dir.join("runroot").display()
    );
    let script = |name: &str, args: &[&str]| -> Output {
        std::process::Command::new(root.join("ci").join(name))
            .args(args)
            .env("CONTAINERS_CONF", &builder.conf)
            .env("CONTAINERS_REGISTRIES_CONF", &registries_conf)
            .env("ENGINE", &engine)
            .env_remove("GITHUB_OUTPUT")
            .output()
            .unwrap()
    };

    // pin-bases.sh resolves the tag to the digest the registry serves.
    let bases = dir.path().join("bases.env");
    let zero = "0".repeat(64);
    std::fs::write(
        &bases,
        format!(
            "# stand-ins\nDEBIAN_BASE_TAG={base_tag}\nDEBIAN_BASE={h}/bases/busybox@sha256:{zero}\nBUSYBOX_BASE_TAG={base_tag}\nBUSYBOX_BASE={h}/bases/busybox@sha256:{zero}\n",
            h = reg.host
        ),
    )
    .unwrap();
    let bases_s = bases.to_str().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(dist.join("bin")).unwrap();
    for b in ["guest-agent", "cp-verifier"] {
        std::fs::copy(provenant_tests::podman::BUSYBOX, dist.join("bin").join(b)).unwrap();
    }
    let sums = |dist: &Path| {
        let o = std::process::Command::new("sha256sum")
            .args(["guest-agent", "cp-verifier"])
            .current_dir(dist.join("bin"))
            .output()
            .unwrap();
        std::fs::write(dist.join("SHA256SUMS"), o.stdout).unwrap();
    };
    sums(&dist);
    let out_reg = format!("{}/Provenant/Provenant", reg.host);
    let digests = dir.path().join("digests.txt");
    let build_args = [
        "--registry",
        &out_reg,
        "--tag",
        "v0.0.0-test",
        "--push",
        "--bases",
        bases_s,
        "--dist",
        dist.to_str().unwrap(),
        "--digests-out",
        digests.to_str().unwrap(),
    ];
    // Placeholder pins are refused before anything is built.
    let o = script("build-images.sh", &build_args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("placeholder digest"), "{}", stderr(&o));

    let o = script("pin-bases.sh", &["--plain-http", bases_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pinned = std::fs::read_to_string(&bases).unwrap();
    let want = format!("DEBIAN_BASE={}/bases/busybox@{base_digest}", reg.host);
    assert!(pinned.contains(&want), "{pinned}");
    assert!(pinned.starts_with("# stand-ins\n"), "{pinned}");

    // A binary that is not the one SHA256SUMS names is refused.
    std::fs::write(dist.join("bin/cp-verifier"), b"tampered").unwrap();
    let o = script("build-images.sh", &build_args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not match"), "{}", stderr(&o));
    std::fs::copy(
        provenant_tests::podman::BUSYBOX,
        dist.join("bin/cp-verifier"),
    )
    .unwrap();

    let o = script("build-images.sh", &build_args);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let lines = std::fs::read_to_string(&digests).unwrap();
    let refs: Vec<&str> = lines.lines().collect();
    assert_eq!(refs.len(), 3, "{lines}");
    let lower = out_reg.to_lowercase();
    for (r, name) in refs.iter().zip(["guest-agent", "cp-verifier", "workload"]) {
        let (image, digest) = r.split_once('@').unwrap();
        assert_eq!(image, format!("{lower}/{name}"));
        // The reported digest is the manifest the registry serves for the tag.
        let o = std::process::Command::new("curl")
            .args(["-sfI", "-H"])
            .arg("Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
            .arg(format!(
                "{}/v2/{}/manifests/v0.0.0-test",
                reg.url(),
                image.split_once('/').unwrap().1
            ))
            .output()
            .unwrap();
        let headers = String::from_utf8_lossy(&o.stdout).to_lowercase();
        assert!(
            headers.contains(&format!("docker-content-digest: {digest}")),
            "{name}: {headers}"
        );
    }

    // The images as built: users, files, and the workload actually serving.
    let guest = Podman::new(dir.path(), "img-guest", dir.path());
    let pull_ok = |r: &str| guest.run(&["pull", "-q", "--tls-verify=false", r]);
    for r in &refs {
        pull_ok(r);
    }
    let inspect = |r: &str, f: &str| guest.run(&["image", "inspect", r, "--format", f]);
    assert_eq!(inspect(refs[0], "{{.Config.User}}"), "0:0");
    assert_eq!(inspect(refs[1], "{{.Config.User}}"), "10001:10001");
    assert_eq!(inspect(refs[2], "{{.Config.User}}"), "65534:65534");
    assert!(inspect(refs[2], "{{.Labels}}")
        .contains(&format!("{}/bases/busybox@{base_digest}", reg.host)));
    let owner = guest.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/busybox",
        refs[1],
        "stat",
        "-c",
        "%u:%g %a",
        "/var/lib/provenant",
        "/usr/local/bin/cp-verifier",
    ]);
    assert_eq!(
        owner.lines().collect::<Vec<_>>(),
        ["10001:10001 755", "0:0 755"]
    );
    guest.run(&["run", "-d", "--name", "web", "--network", "none", refs[2]]);
    // httpd runs as nobody; fetch through its own loopback (retry: it may still be
    // starting; no timing is asserted).
    let mut page = String::new();
    for _ in 0..100 {
        let o = guest.try_run(&[
            "exec",
            "web",
            "/bin/busybox",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/",
        ]);
        if o.status.success() {
            page = String::from_utf8_lossy(&o.stdout).into_owned();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(page.contains("Provenant example workload"), "{page:?}");
}
