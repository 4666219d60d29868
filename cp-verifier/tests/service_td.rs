//! TDs bound to a service TD, migratable TDs, SERVTD_EXT and SEPT_VE_DISABLE clear:
//! typed refusals (`ServiceTdBound`, `MigratableTd`, `ServTdExt`,
//! `SeptVeNotDisabled`), the `[policy.tdx]` lists that accept a binding,
//! `verify quote --allow-mrservicetd`, and advisory ids as a list.
//!
//! No public TD 1.5 quote with a non-zero MRSERVICETD exists in the test data, so the
//! quotes here come from the simulator (tdx-sim, TEST PKI), signed as a QE signs.

mod common;
mod harness;

use std::path::PathBuf;

use cp_verifier::attest::dcap::{
    parse_collateral, verify_quote, verify_quote_with, BindingRules, QuoteVerifyError,
};
use provenant_base::clock::UnixSecs;
use serde_json::Value;
use tdx_sim::{platform, TdReport, TestPki};

/// 2030-01-01T00:00:00Z, inside the TEST collateral's window.
const FIXED: u64 = 1_893_456_000;
const SERVICE_TD: [u8; 48] = [0x5a; 48];

/// TDATTRIBUTES with SEPT_VE_DISABLE and the given extra bits (u64 bit numbers).
fn attributes(extra: &[u32]) -> [u8; 8] {
    let mut v = 1u64 << 28;
    for b in extra {
        v |= 1u64 << b;
    }
    v.to_le_bytes()
}

/// TDATTRIBUTES with SEPT_VE_DISABLE (and DEBUG) clear: all zero, as Azure's
/// paravisor TDs have them, and PKS and PERFMON set (bits DCAP otherwise accepts).
const SEPT_VE_CLEAR: [[u8; 8]; 2] = [[0; 8], ((1u64 << 30) | (1 << 63)).to_le_bytes()];

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// `cp-verifier verify quote` on `quote` under the TEST root and collateral (or
/// none), at FIXED, with `extra` arguments.
fn cli(quote: &[u8], with_collateral: bool, extra: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let q = write(&dir, "quote", quote);
    let root = TestPki::root_ca_der_path();
    let coll = TestPki::collateral_path();
    let at = FIXED.to_string();
    let mut args = vec![
        "verify",
        "quote",
        "--quote",
        q.to_str().unwrap(),
        "--root-ca",
        root.to_str().unwrap(),
        "--at",
        &at,
    ];
    if with_collateral {
        args.extend(["--collateral", coll.to_str().unwrap()]);
    }
    args.extend(extra);
    common::cp_verifier(&args)
}

#[test]
fn cli_refuses_a_service_td_bound_quote_unless_allowed() {
    let raw = TdReport::new().quote_v5_td15(SERVICE_TD);
    let hex = hex::encode(SERVICE_TD);
    for with_collateral in [true, false] {
        let (code, v) = cli(&raw, with_collateral, &[]);
        assert_eq!(code, 1, "{v}");
        assert_eq!(v["error"]["kind"], "ServiceTdBound", "{v}");
        assert!(v["error"]["detail"].as_str().unwrap().contains(&hex), "{v}");
        // Another service TD allowed: still refused.
        let (code, v) = cli(
            &raw,
            with_collateral,
            &["--allow-mrservicetd", &"a5".repeat(48)],
        );
        assert_eq!(
            (code, v["error"]["kind"].as_str()),
            (1, Some("ServiceTdBound"))
        );
        // This one allowed (among others): verified, and the output names it.
        let (code, v) = cli(
            &raw,
            with_collateral,
            &[
                "--allow-mrservicetd",
                &"a5".repeat(48),
                "--allow-mrservicetd",
                &hex,
            ],
        );
        assert_eq!(code, 0, "{v}");
        assert_eq!(v["body"], "td15");
        assert_eq!(v["mrservicetd"], hex.as_str());
    }
    let (code, v) = cli(&raw, true, &["--allow-mrservicetd", &hex]);
    assert_eq!(
        (code, v["tcb_status"].as_str()),
        (0, Some("UpToDate")),
        "{v}"
    );
    // An unbound TD 1.5 reports its zero MRSERVICETD; a TD 1.0 has none.
    let (code, v) = cli(&TdReport::new().quote_v5_td15([0; 48]), true, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mrservicetd"], "00".repeat(48));
    let (code, v) = cli(&TdReport::new().quote_v4(), true, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mrservicetd"], Value::Null);
    // `0x` is accepted; not hex, or not 48 bytes, is a usage error.
    let (code, v) = cli(&raw, true, &["--allow-mrservicetd", &format!("0x{hex}")]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(cli(&raw, true, &["--allow-mrservicetd", "zz"]).0, 2);
    assert_eq!(cli(&raw, true, &["--allow-mrservicetd", &hex[2..]]).0, 2);
}

#[test]
fn cli_refuses_migratable_and_servtd_ext_with_their_own_kinds() {
    let migratable = TdReport::new().with_td_attributes(attributes(&[29]));
    let servtd_ext = TdReport::new().with_td_attributes(attributes(&[17]));
    let hex = hex::encode(SERVICE_TD);
    let cases: [(Vec<u8>, &str); 4] = [
        (migratable.quote_v4(), "MigratableTd"),
        (migratable.quote_v5_td15([0; 48]), "MigratableTd"),
        (servtd_ext.quote_v4(), "ServTdExt"),
        (servtd_ext.quote_v5_td15(SERVICE_TD), "ServTdExt"),
    ];
    for (raw, kind) in cases {
        for with_collateral in [true, false] {
            let (code, v) = cli(&raw, with_collateral, &["--allow-mrservicetd", &hex]);
            assert_eq!((code, v["error"]["kind"].as_str()), (1, Some(kind)), "{v}");
        }
    }
}

#[test]
fn cli_refuses_sept_ve_clear_with_its_own_kind() {
    for attrs in SEPT_VE_CLEAR {
        let td = TdReport::new().with_td_attributes(attrs);
        for raw in [td.quote_v4(), td.quote_v5_td15([0; 48])] {
            let (code, v) = cli(&raw, true, &[]);
            assert_eq!(
                (code, v["error"]["kind"].as_str()),
                (1, Some("SeptVeNotDisabled")),
                "{v}"
            );
            let detail = v["error"]["detail"].as_str().unwrap();
            assert!(detail.contains("SEPT_VE_DISABLE"), "{detail}");
            // Without collateral only signatures and the PCK chain are checked: DCAP's
            // TD attribute policy is not applied (as for Azure's quote, cloud_quotes.rs).
            let (code, v) = cli(&raw, false, &[]);
            assert_eq!(code, 0, "{v}");
            assert_eq!(v["td_attributes"], hex::encode(attrs));
        }
    }
}

#[test]
fn sept_ve_clear_is_refused_only_on_a_signed_body() {
    let c = parse_collateral(TestPki::collateral_json()).unwrap();
    let root = Some(TestPki::root_ca_der());
    let at = UnixSecs::from_unsigned(FIXED);
    // The kind the library gives is the reason code the control plane answers with.
    assert_eq!(
        QuoteVerifyError::SeptVeNotDisabled.kind(),
        policy::ReasonCode::SeptVeNotDisabled.as_str()
    );
    // Allowing every binding does not accept it: there is no switch.
    let open = BindingRules {
        allowed_mrservicetd: vec![SERVICE_TD],
        allow_servtd_ext: true,
    };
    for attrs in SEPT_VE_CLEAR {
        let td = TdReport::new().with_td_attributes(attrs);
        for mut raw in [td.quote_v4(), td.quote_v5_td15([0; 48])] {
            assert_eq!(
                verify_quote(&raw, &c, at, root).unwrap_err(),
                QuoteVerifyError::SeptVeNotDisabled
            );
            assert_eq!(
                verify_quote_with(&raw, &c, at, root, &open).unwrap_err(),
                QuoteVerifyError::SeptVeNotDisabled
            );
            // A forged body is a signature failure, never a statement about it.
            raw[48 + 6 + 136] ^= 1;
            let e = verify_quote(&raw, &c, at, root).unwrap_err();
            assert!(matches!(e, QuoteVerifyError::Verification(_)), "{e:?}");
        }
    }
    // The same TD with SEPT_VE_DISABLE set verifies.
    let raw = TdReport::new().with_td_attributes(attributes(&[30, 63]));
    verify_quote(&raw.quote_v4(), &c, at, root).unwrap();
}

#[test]
fn cli_out_of_date_lists_its_advisories() {
    let raw = TdReport::new().out_of_date().quote_v4();
    let (code, v) = cli(&raw, true, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "TcbStatusNotAllowed");
    assert_eq!(
        v["error"]["advisories"],
        serde_json::json!([platform::OUT_OF_DATE_ADVISORY])
    );
    let detail = v["error"]["detail"].as_str().unwrap();
    assert!(
        detail.ends_with(&format!("advisories: {}", platform::OUT_OF_DATE_ADVISORY)),
        "{detail}"
    );
    assert!(
        !detail.contains("Array") && !detail.contains('['),
        "{detail}"
    );
}

#[test]
fn a_binding_is_judged_only_on_a_signed_body() {
    let c = parse_collateral(TestPki::collateral_json()).unwrap();
    let root = Some(TestPki::root_ca_der());
    let at = UnixSecs::from_unsigned(FIXED);
    let mut raw = TdReport::new().quote_v5_td15(SERVICE_TD);
    assert_eq!(
        verify_quote(&raw, &c, at, root).unwrap_err().kind(),
        "ServiceTdBound"
    );
    let rules = BindingRules {
        allowed_mrservicetd: vec![SERVICE_TD],
        allow_servtd_ext: false,
    };
    let v = verify_quote_with(&raw, &c, at, root, &rules).unwrap();
    assert_eq!(v.quote().body.service_td().unwrap().0, SERVICE_TD);
    // A forged body (MRTD changed after signing) is a signature failure, never a
    // statement about its binding.
    let mrtd = 48 + 6 + 136;
    raw[mrtd] ^= 1;
    for r in [BindingRules::default(), rules] {
        let e = verify_quote_with(&raw, &c, at, root, &r).unwrap_err();
        assert!(matches!(e, QuoteVerifyError::Verification(_)), "{e:?}");
    }
}

/// A control plane verifying tdx-sim quotes with the TEST collateral, under the
/// `[policy.tdx]` given (MRTD and RTMR1/2 pinned besides).
async fn control_plane(policy_tdx: &str) -> (harness::Cp, harness::TestAgent) {
    let dir = tempfile::tempdir().unwrap();
    let a = harness::TestAgent::new("td-bound");
    let td = TdReport::default();
    let policy = format!(
        "mrtd_allowlist = [\"{}\"]\nrtmr_allowlists = [[], [\"{}\"], [\"{}\"]]\n{policy_tdx}",
        hex::encode(td.mrtd),
        hex::encode(td.rtmrs[1]),
        hex::encode(td.rtmrs[2])
    );
    let cp = harness::start_with(dir, None, |c| {
        c.enrollment.keys.push(a.enroll());
        c.tdx.root_ca_file = Some(TestPki::root_ca_der_path());
        c.tdx.collateral_file = Some(TestPki::collateral_path());
        c.policy.tdx = toml::from_str(&policy).unwrap();
    })
    .await;
    (cp, a)
}

/// Registers `a` with a quote built by `quote` over the report's binding.
async fn register(
    cp: &harness::Cp,
    a: &harness::TestAgent,
    quote: impl Fn(TdReport) -> Vec<u8>,
) -> (u16, Value) {
    use base64::Engine;
    use evidence::{Report, Tier, REPORT_PAYLOAD_TYPE};
    let nonce = cp.challenge().await;
    let mut r: Report = a
        .report(nonce, cp.now(), harness::measurements(1, 1))
        .peek()
        .unwrap();
    r.tier = Tier::Tdx;
    let env = guest_agent::agent::sign_payload(&a.signer, REPORT_PAYLOAD_TYPE, &r).unwrap();
    let raw = quote(TdReport::default().with_report_data(evidence::report_data(&env)));
    let req = evidence::api::RegisterRequest {
        envelope: env,
        evidence: evidence::api::RegisterEvidence {
            quote: Some(base64::engine::general_purpose::STANDARD.encode(raw)),
            ..Default::default()
        },
    };
    cp.post_raw("/api/v1/register", serde_json::to_vec(&req).unwrap())
        .await
}

fn reasons(v: &Value) -> Vec<(String, String)> {
    v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn server_refuses_a_service_td_bound_td_by_default() {
    let (cp, a) = control_plane("").await;
    let (s, v) = register(&cp, &a, |b| b.quote_v5_td15(SERVICE_TD)).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["kind"], "ServiceTdBound", "{v}");
    assert!(
        v["error"]["detail"]
            .as_str()
            .unwrap()
            .contains(&hex::encode(SERVICE_TD)),
        "{v}"
    );
    let (s, v) = register(&cp, &a, |b| {
        b.with_td_attributes(attributes(&[29])).quote_v4()
    })
    .await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (403, Some("MigratableTd"))
    );
    let (s, v) = register(&cp, &a, |b| {
        b.with_td_attributes(attributes(&[17]))
            .quote_v5_td15([0; 48])
    })
    .await;
    assert_eq!((s, v["error"]["kind"].as_str()), (403, Some("ServTdExt")));
    // The unbound TD registers green.
    let (s, v) = register(&cp, &a, |b| b.quote_v5_td15([0; 48])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "pass", "{v}");
}

#[tokio::test]
async fn server_refuses_a_td_with_sept_ve_clear() {
    // Even with every binding allowed: no policy accepts it.
    let hex = hex::encode(SERVICE_TD);
    let (cp, a) = control_plane(&format!(
        "allowed_mrservicetd = [\"{hex}\"]\nallow_servtd_ext = true"
    ))
    .await;
    for attrs in SEPT_VE_CLEAR {
        for v5 in [false, true] {
            let (s, v) = register(&cp, &a, |b| {
                let b = b.with_td_attributes(attrs);
                if v5 {
                    b.quote_v5_td15([0; 48])
                } else {
                    b.quote_v4()
                }
            })
            .await;
            assert_eq!(
                (s, v["error"]["kind"].as_str()),
                (403, Some("SeptVeNotDisabled")),
                "{v}"
            );
            let detail = v["error"]["detail"].as_str().unwrap();
            assert!(
                detail.contains("SEPT_VE_DISABLE") && detail.contains("#VE"),
                "{detail}"
            );
        }
    }
    // The refusals raised AttestationRefused alerts naming it, and the fleet page
    // shows them.
    let alerts = cp.alerts("AttestationRefused").await;
    assert!(!alerts.is_empty());
    for a in alerts {
        let d = a["detail"].as_str().unwrap();
        assert!(
            d.starts_with("SeptVeNotDisabled: TDATTRIBUTES SEPT_VE_DISABLE"),
            "{d}"
        );
    }
    let html = cp
        .http
        .get(format!("{}/agents", cp.base))
        .bearer_auth(harness::VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("SeptVeNotDisabled: TDATTRIBUTES SEPT_VE_DISABLE"),
        "{html}"
    );
    // The same TD with SEPT_VE_DISABLE set registers.
    let (s, v) = register(&cp, &a, |b| {
        b.with_td_attributes(attributes(&[30, 63])).quote_v4()
    })
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn server_accepts_an_allowed_service_td_yellow_and_a_trusted_one_green() {
    let hex = hex::encode(SERVICE_TD);
    let (cp, a) = control_plane(&format!("allowed_mrservicetd = [\"{hex}\"]")).await;
    let (s, v) = register(&cp, &a, |b| b.quote_v5_td15(SERVICE_TD)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "warn", "{v}");
    assert_eq!(reasons(&v), [("ServiceTdBound".into(), "warn".into())]);
    let view = cp.get("/api/v1/agents/td-bound").await.1;
    assert_eq!(view["badge"], "yellow", "{view}");
    // The dashboard names the reason and the service TD.
    let html = cp
        .http
        .get(format!("{}/agent/td-bound", cp.base))
        .bearer_auth(harness::VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-reason=\"ServiceTdBound\""), "{html}");
    assert!(html.contains(&hex), "{html}");
    // Another service TD is still refused.
    let (s, v) = register(&cp, &a, |b| b.quote_v5_td15([0xa5; 48])).await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (403, Some("ServiceTdBound"))
    );

    let (cp, a) = control_plane(&format!("trusted_mrservicetd = [\"{hex}\"]")).await;
    let (s, v) = register(&cp, &a, |b| b.quote_v5_td15(SERVICE_TD)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "pass", "{v}");
}

#[tokio::test]
async fn server_out_of_date_refusal_lists_advisories() {
    let (cp, a) = control_plane("").await;
    let (s, v) = register(&cp, &a, |b| b.out_of_date().quote_v4()).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["kind"], "TcbStatus", "{v}");
    assert_eq!(
        v["error"]["advisories"],
        serde_json::json!([platform::OUT_OF_DATE_ADVISORY])
    );
    let detail = v["error"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("(advisories: {})", platform::OUT_OF_DATE_ADVISORY)),
        "{detail}"
    );
}
