//! The `cp-verifier verify quote` contract, through the real binary.

mod common;

use serde_json::Value;

fn data(name: &str) -> String {
    format!(
        "{}/../evidence/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str]) -> (i32, Value) {
    common::cp_verifier(&[&["verify", "quote"], args].concat())
}

#[test]
fn verified_with_collateral() {
    let (code, v) = run(&[
        "--quote",
        &data("tdx_quote"),
        "--collateral",
        &data("tdx_quote_collateral.json"),
        "--at",
        "1752919234",
    ]);
    assert_eq!(code, 0, "{v}");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(data("expected.json")).unwrap()).unwrap();
    let td = &expected["quotes"][0]["td"];
    assert_eq!(v["version"], 4);
    assert_eq!(v["tee"], "tdx");
    assert_eq!(v["body"], "td10");
    assert_eq!(v["mrtd"], td["mrtd"]);
    assert_eq!(v["rtmrs"][0], td["rtmr0"]);
    assert_eq!(v["rtmrs"][3], td["rtmr3"]);
    assert_eq!(v["report_data"], td["reportdata"]);
    assert_eq!(v["td_attributes"], td["td_attributes"]);
    assert_eq!(v["fmspc"], "b0c06f000000");
    assert_eq!(v["tcb_status"], "UpToDate");
    assert_eq!(v["advisory_ids"], serde_json::json!([]));
    assert_eq!(v["collateral"], "verified");
}

#[test]
fn hex_input_without_collateral() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("quote.hex");
    std::fs::write(
        &p,
        format!(
            "0x{}\n",
            hex::encode(std::fs::read(data("tdx_quote_outdated")).unwrap())
        ),
    )
    .unwrap();
    let (code, v) = run(&["--quote", p.to_str().unwrap(), "--at", "1774003274"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["version"], 5);
    assert_eq!(v["body"], "td15");
    assert_eq!(v["collateral"], "absent");
    assert_eq!(v["tcb_status"], Value::Null);
    assert_eq!(v["fmspc"], "90c06f000000");
}

#[test]
fn refusals_exit_1_with_typed_errors() {
    let (code, v) = run(&[
        "--quote",
        &data("tdx_quote_outdated"),
        "--collateral",
        &data("tdx_quote_outdated_collateral.json"),
        "--at",
        "1774003274",
    ]);
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (1, Some("NoMatchingTcbLevel")),
        "{v}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut q = std::fs::read(data("tdx_quote")).unwrap();
    q[48 + 136] ^= 1; // MRTD
    let p = dir.path().join("tampered");
    std::fs::write(&p, &q).unwrap();
    let (code, v) = run(&["--quote", p.to_str().unwrap(), "--at", "1752919234"]);
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (1, Some("QuoteVerificationFailed")),
        "{v}"
    );

    std::fs::write(&p, b"{not collateral").unwrap();
    let (code, v) = run(&[
        "--quote",
        &data("tdx_quote"),
        "--collateral",
        p.to_str().unwrap(),
        "--at",
        "1752919234",
    ]);
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (1, Some("MalformedCollateral")),
        "{v}"
    );

    std::fs::write(&p, &q[..100]).unwrap();
    let (code, v) = run(&["--quote", p.to_str().unwrap()]);
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (1, Some("MalformedQuote")),
        "{v}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["--quote", "/nonexistent/quote"]).0, 2);
    assert_eq!(run(&["--at", "5"]).0, 2);
    assert_eq!(
        run(&["--quote", &data("tdx_quote"), "--at", "yesterday"]).0,
        2
    );
}
