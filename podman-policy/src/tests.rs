//! The renderer's unit tests (fixtures in `files/`, see `files/README.md`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use policy::image::{ImagePolicy, ImageRule};

use crate::pem::{certificates_pem, pem_blocks, public_key_pem};
use crate::{render, RenderInputs, Rendered, Unpinnable, MAX_INPUT_FILE};

const VENDOR_KEY: &[u8] = include_bytes!("../files/vendor-cosign.pub");
const PUBLIC_GOOD_REKOR: &[u8] = include_bytes!("../files/rekor.pub");
const ROOT: &[u8] = include_bytes!("../files/trusted_root.json");
const COSIGN2: &[u8] = include_bytes!("../files/testdata/cosign2.pub");
const FULCIO_V1: &[u8] = include_bytes!("../files/testdata/fulcio_v1.crt.pem");
const FIXTURE_REKOR: &[u8] = include_bytes!("../files/testdata/rekor.pub");

fn inputs() -> RenderInputs {
    let files = [
        ("vendor.pub", VENDOR_KEY),
        ("cosign2.pub", COSIGN2),
        ("rekor.pub", PUBLIC_GOOD_REKOR),
        ("trusted_root.json", ROOT),
        ("fulcio_v1.crt.pem", FULCIO_V1),
        ("fixture-rekor.pub", FIXTURE_REKOR),
    ]
    .into_iter()
    .map(|(p, d)| (PathBuf::from(p), d.to_vec()))
    .collect();
    RenderInputs {
        install_dir: "/etc/containers/provenant".into(),
        files,
        unpinnable: Unpinnable::Refuse,
    }
}

fn policy(toml_text: &str) -> ImagePolicy {
    toml::from_str(toml_text).unwrap()
}

fn json(r: &Rendered) -> serde_json::Value {
    serde_json::from_str(&r.policy_json).unwrap()
}

const WORKFLOW: &str = r#"
[[trust]]
scope = "ghcr.io/provenant"
[trust.keyless]
trusted_root = "trusted_root.json"
issuer = "https://token.actions.githubusercontent.com"
san = "https://github.com/provenant/provenant/.github/workflows/release.yml@refs/heads/main"
"#;

#[test]
fn one_key_renders_key_path_and_default_reject() {
    let p = policy(
        "[[trust]]\nscope = \"127.0.0.1:5000/team/\"\nkeys = [\"vendor.pub\"]\nrequire_rekor = false\n",
    );
    let r = render(&p, &inputs()).unwrap();
    let v = json(&r);
    assert_eq!(v["default"], serde_json::json!([{"type": "reject"}]));
    assert_eq!(
        v["transports"]["docker"]["127.0.0.1:5000/team"],
        serde_json::json!([{
            "type": "sigstoreSigned",
            "keyPath": "/etc/containers/provenant/keys/00-127.0.0.1_5000_team.pub",
            "signedIdentity": {"type": "matchRepository"}
        }])
    );
    assert_eq!(
        r.files["keys/00-127.0.0.1_5000_team.pub"], VENDOR_KEY,
        "an already canonical PEM is kept byte for byte"
    );
    assert_eq!(r.files.len(), 1);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(
        r.registries_d.lines().skip(2).collect::<Vec<_>>(),
        [
            "docker:",
            "  \"127.0.0.1:5000/team\":",
            "    use-sigstore-attachments: true"
        ]
    );
    // Field order is fixed: type first.
    assert!(r
        .policy_json
        .contains("\"type\": \"sigstoreSigned\",\n          \"keyPath\""));
    assert_eq!(render(&p, &inputs()).unwrap(), r, "deterministic");
}

#[test]
fn several_keys_and_rekor_are_rendered_with_warnings() {
    let p = policy(
        "[[trust]]\nscope = \"registry.example.com/vendor\"\nkeys = [\"vendor.pub\", \"cosign2.pub\"]\nrekor_key = \"rekor.pub\"\n",
    );
    let r = render(&p, &inputs()).unwrap();
    let req = &json(&r)["transports"]["docker"]["registry.example.com/vendor"][0];
    assert_eq!(
        req["keyPaths"],
        serde_json::json!([
            "/etc/containers/provenant/keys/00-registry.example.com_vendor.0.pub",
            "/etc/containers/provenant/keys/00-registry.example.com_vendor.1.pub"
        ])
    );
    assert!(req.get("keyPath").is_none());
    assert_eq!(
        req["rekorPublicKeyPath"],
        "/etc/containers/provenant/keys/00-registry.example.com_vendor.rekor.pub"
    );
    assert_eq!(r.files.len(), 3);
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("keyPaths") && r.warnings[0].contains("Debian 12"));
    assert!(r.warnings[1].contains("rekorPublicKeyPath"));
}

#[test]
fn keyless_email_from_trusted_root_extracts_fulcio_and_rekor() {
    let p = policy(
        r#"
[[trust]]
scope = "quay.io/example-team"
[trust.keyless]
trusted_root = "trusted_root.json"
issuer = "https://accounts.google.com"
subject_email = "release@example.com"
"#,
    );
    let r = render(&p, &inputs()).unwrap();
    let req = &json(&r)["transports"]["docker"]["quay.io/example-team"][0];
    assert_eq!(
        req["fulcio"],
        serde_json::json!({
            "caPath": "/etc/containers/provenant/keys/00-quay.io_example-team.fulcio-ca.pem",
            "oidcIssuer": "https://accounts.google.com",
            "subjectEmail": "release@example.com"
        })
    );
    assert_eq!(
        r.files["keys/00-quay.io_example-team.rekor.pub"], PUBLIC_GOOD_REKOR,
        "the root's ECDSA Rekor key"
    );
    // Two CAs in the root: one self-signed root, and an intermediate + root.
    let ca =
        String::from_utf8(r.files["keys/00-quay.io_example-team.fulcio-ca.pem"].clone()).unwrap();
    assert_eq!(ca.matches("-----BEGIN CERTIFICATE-----").count(), 3);
    assert!(certificates_pem(Path::new("ca"), ca.as_bytes()).is_ok());
    // The Rekor v2 (Ed25519) log is left out, and said so.
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("PKIX_ED25519") && w.contains("log2025-1.rekor.sigstore.dev")));
    assert!(r.warnings.iter().any(|w| w.contains("\"fulcio\"")));
}

#[test]
fn keyless_email_from_fulcio_ca_and_rekor_key() {
    let p = policy(
        r#"
[[trust]]
scope = "localhost/app"
rekor_key = "fixture-rekor.pub"
[trust.keyless]
fulcio_ca = "fulcio_v1.crt.pem"
issuer = "https://github.com/login/oauth"
subject_email = "mitr@redhat.com"
"#,
    );
    let r = render(&p, &inputs()).unwrap();
    let req = &json(&r)["transports"]["docker"]["localhost/app"][0];
    assert_eq!(req["fulcio"]["subjectEmail"], "mitr@redhat.com");
    assert_eq!(
        req["rekorPublicKeyPath"],
        "/etc/containers/provenant/keys/00-localhost_app.rekor.pub"
    );
    assert_eq!(
        r.files["keys/00-localhost_app.fulcio-ca.pem"]
            .windows(27)
            .filter(|w| w == b"-----BEGIN CERTIFICATE-----")
            .count(),
        1
    );
}

#[test]
fn workflow_identity_is_refused_or_rendered_as_reject() {
    let p = policy(&format!(
        "{WORKFLOW}\n[[trust]]\nscope = \"ghcr.io\"\nkeys = [\"vendor.pub\"]\nrequire_rekor = false\n"
    ));
    let e = render(&p, &inputs()).unwrap_err();
    assert_eq!(e.kind(), "unpinnable_identity");
    assert!(
        e.to_string().contains("san \"https://github.com/provenant"),
        "{e}"
    );
    assert!(e.to_string().contains("--reject-unpinnable"), "{e}");

    let mut i = inputs();
    i.unpinnable = Unpinnable::Reject;
    let r = render(&p, &i).unwrap();
    let v = json(&r);
    // Explicitly rejected, so the broader ghcr.io key rule cannot catch it.
    assert_eq!(
        v["transports"]["docker"]["ghcr.io/provenant"],
        serde_json::json!([{"type": "reject"}])
    );
    assert_eq!(
        v["transports"]["docker"]["ghcr.io"][0]["type"],
        "sigstoreSigned"
    );
    assert!(
        r.warnings[0].contains("rendered as reject") && r.warnings[0].contains("guest-agent pull")
    );
    assert!(!r.registries_d.contains("ghcr.io/provenant"));
    assert!(r.registries_d.contains("\"ghcr.io\":"));
    assert!(
        !r.files.keys().any(|k| k.contains("provenant")),
        "no key material for a rejected scope"
    );

    // An email together with a workflow constraint is no more pinnable.
    let mut p = policy(WORKFLOW);
    let k = p.trust[0].keyless.as_mut().unwrap();
    k.san = None;
    k.subject_email = Some("a@example.com".into());
    k.source_repository = Some("https://github.com/provenant/provenant".into());
    k.source_ref = Some("refs/heads/main".into());
    let e = render(&p, &inputs()).unwrap_err();
    assert_eq!(e.kind(), "unpinnable_identity");
    assert!(e.to_string().contains("source_repository"), "{e}");
}

#[test]
fn scopes_podman_would_misread_are_refused() {
    for scope in [
        "provenant/app",
        "ghcr.io/Provenant",
        "ghcr.io/provenant/app:1",
        "*.example.com",
        "ghcr.io//x",
        "-bad.io/x",
        "host:99999999/x",
        "host:65536/x",
        "host:0/x",
        "host:/x",
        "host:+80/x",
    ] {
        let p = ImagePolicy {
            prefer_keyless: false,
            trust: vec![ImageRule {
                scope: scope.into(),
                keys: vec!["vendor.pub".into()],
                keyless: None,
                rekor_key: None,
                require_rekor: false,
            }],
        };
        let e = render(&p, &inputs()).unwrap_err();
        assert!(
            matches!(e.kind(), "bad_scope" | "invalid_policy"),
            "{scope}: {e}"
        );
    }
    let p = policy(
        "[[trust]]\nscope = \"a.io/x\"\nkeys = [\"vendor.pub\"]\nrequire_rekor = false\n[[trust]]\nscope = \"a.io/x/\"\nkeys = [\"cosign2.pub\"]\nrequire_rekor = false\n",
    );
    let e = render(&p, &inputs()).unwrap_err();
    assert_eq!(e.kind(), "duplicate_scope", "{e}");
}

#[test]
fn bad_material_is_named() {
    let key_rule = |key: &str| {
        policy(&format!(
            "[[trust]]\nscope = \"a.io/x\"\nkeys = [\"{key}\"]\nrequire_rekor = false\n"
        ))
    };
    let mut i = inputs();
    i.files
        .insert("garbage".into(), b"\x00\xffnot pem".to_vec());
    i.files.insert("cert-as-key".into(), FULCIO_V1.to_vec());
    i.files
        .insert("two-keys".into(), [VENDOR_KEY, COSIGN2].concat());
    i.files.insert(
        "bad-der".into(),
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec(),
    );
    i.files
        .insert("huge".into(), vec![b' '; MAX_INPUT_FILE + 1]);
    for (path, kind, needle) in [
        ("absent.pub", "missing_file", "not provided"),
        ("garbage", "bad_key", "UTF-8"),
        ("cert-as-key", "bad_key", "no PEM \"PUBLIC KEY\""),
        ("two-keys", "bad_key", "several"),
        ("bad-der", "bad_key", "SubjectPublicKeyInfo"),
        ("huge", "bad_key", "larger than"),
    ] {
        let e = render(&key_rule(path), &i).unwrap_err();
        assert_eq!(e.kind(), kind, "{path}: {e}");
        assert!(e.to_string().contains(needle), "{path}: {e}");
    }

    let email_rule = policy(
        "[[trust]]\nscope = \"a.io/x\"\n[trust.keyless]\ntrusted_root = \"root\"\nissuer = \"i\"\nsubject_email = \"e@x\"\n",
    );
    let mut root: serde_json::Value = serde_json::from_slice(ROOT).unwrap();
    let ecdsa = root["tlogs"][0].clone();
    let mut variants = Vec::new();
    variants.push((b"{".to_vec(), "EOF"));
    let mut r = root.clone();
    r["mediaType"] = "application/json".into();
    variants.push((serde_json::to_vec(&r).unwrap(), "mediaType"));
    let mut r = root.clone();
    r["tlogs"] = serde_json::json!([root["tlogs"][1].clone()]);
    variants.push((serde_json::to_vec(&r).unwrap(), "no ECDSA"));
    let mut r = root.clone();
    let mut other = ecdsa.clone();
    other["baseUrl"] = "https://other.example".into();
    other["publicKey"]["rawBytes"] = serde_json::Value::String(
        base64::engine::general_purpose::STANDARD.encode(&pem_blocks(COSIGN2).unwrap()[0].1),
    );
    r["tlogs"] = serde_json::json!([ecdsa, other]);
    variants.push((serde_json::to_vec(&r).unwrap(), "2 ECDSA Rekor keys"));
    root["certificateAuthorities"] = serde_json::json!([]);
    variants.push((
        serde_json::to_vec(&root).unwrap(),
        "no certificate authorities",
    ));
    for (data, needle) in variants {
        let mut i = inputs();
        i.files.insert("root".into(), data);
        let e = render(&email_rule, &i).unwrap_err();
        assert_eq!(e.kind(), "bad_trusted_root", "{e}");
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}

#[test]
fn install_dir_must_be_absolute_and_empty_policy_rejects_all() {
    let mut i = inputs();
    i.install_dir = "relative/dir".into();
    assert_eq!(
        render(&ImagePolicy::default(), &i).unwrap_err().kind(),
        "bad_install_dir"
    );
    let r = render(&ImagePolicy::default(), &inputs()).unwrap();
    assert_eq!(
        json(&r),
        serde_json::json!({"default": [{"type": "reject"}], "transports": {"docker": {}}})
    );
    assert!(r.warnings[0].contains("refuse every image"));
    assert!(r.registries_d.ends_with("docker: {}\n"));
}

#[test]
fn pem_parser_never_panics_on_odd_input() {
    for s in [
        "-----BEGIN ",
        "-----BEGIN X-----",
        "-----BEGIN X-----\n-----END Y-----",
        "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----",
        "-----BEGIN é-----\n-----END é-----",
    ] {
        let _ = pem_blocks(s.as_bytes());
        let _ = public_key_pem(Path::new("p"), s.as_bytes());
        let _ = certificates_pem(Path::new("p"), s.as_bytes());
    }
}
