//! The simulated configfs-tsm kernel and RTMR device, driven the way the guest agent
//! drives the real ones.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;
use tdx_sim::configfs::BIG_QUOTE_LEN;
use tdx_sim::rtmr::{extend, unlogged_digest, RTMR_FILES};
use tdx_sim::{Behaviour, ConfigfsKernel, RtmrBehaviour, RtmrDevice, TdReport, TestPki};

const WAIT: Duration = Duration::from_secs(10);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verify(quote: &[u8]) -> Result<dcap_qvl::verify::VerifiedReport, String> {
    let collateral: QuoteCollateralV3 = serde_json::from_slice(TestPki::collateral_json()).unwrap();
    QuoteVerifier::new(TestPki::root_ca_der().to_vec())
        .verify(quote, &collateral, now())
        .map_err(|e| format!("{e:#}"))
}

fn td(quote: &[u8]) -> dcap_qvl::quote::TDReport10 {
    *verify(quote).unwrap().report.as_td10().unwrap()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn generation(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("generation"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// What a configfs-tsm request looks like from the client side.
#[derive(Debug)]
struct Outcome {
    provider: String,
    generations: [u64; 3],
    quote: Vec<u8>,
}

/// The agent's protocol: a fresh directory; wait for the attributes; g1; write
/// REPORTDATA; wait for the generation to move (g2); read outblob; g3.
fn request(root: &Path, name: &str, report_data: &[u8; 64]) -> Outcome {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    wait_for("generation", || {
        dir.join("generation").exists().then_some(())
    });
    let provider = std::fs::read_to_string(dir.join("provider")).unwrap();
    let g1 = generation(&dir);
    std::fs::write(dir.join("inblob"), report_data).unwrap();
    let g2 = wait_for("generation to move", || {
        let g = generation(&dir);
        (g != g1).then_some(g)
    });
    let quote = std::fs::read(dir.join("outblob")).unwrap();
    let g3 = generation(&dir);
    Outcome {
        provider,
        generations: [g1, g2, g3],
        quote,
    }
}

/// The agent's RTMR protocol: read r, write d, poll until the file holds SHA-384(r ‖ d).
fn agent_extend(path: &Path, digest: &[u8; 48]) -> [u8; 48] {
    let r: [u8; 48] = std::fs::read(path).unwrap().try_into().unwrap();
    std::fs::write(path, digest).unwrap();
    let want = extend(&r, digest);
    wait_for("the extended RTMR3", || {
        let v = std::fs::read(path).unwrap();
        // Never a torn or foreign value: our digest until the device catches up.
        assert!(v == digest || v == want, "read {} bytes: {v:02x?}", v.len());
        (v == want).then_some(())
    });
    want
}

#[test]
fn honest_kernel_returns_a_verifying_quote_with_our_report_data() {
    let root = tempfile::tempdir().unwrap();
    let k = ConfigfsKernel::start(root.path(), Behaviour::Honest, None).unwrap();
    let rd = [0x5a; 64];
    let o = request(root.path(), "req1", &rd);
    assert_eq!(o.provider, "tdx_guest\n");
    assert_eq!(o.generations, [0, 1, 1]);
    let r = verify(&o.quote).unwrap();
    assert_eq!(r.status, "UpToDate");
    let t = r.report.as_td10().unwrap();
    assert_eq!(t.report_data, rd);
    assert_eq!(t.rt_mr3, [0; 48]);
    assert_eq!(t.td_attributes[0] & 1, 0);
    assert_eq!(k.quotes_served(), 1);

    // A second request in another directory is independent.
    let o = request(root.path(), "req2", &[1; 64]);
    assert_eq!(o.generations, [0, 1, 1]);
    assert_eq!(td(&o.quote).report_data, [1; 64]);
    assert_eq!(k.quotes_served(), 2);
}

#[test]
fn rewriting_inblob_makes_a_new_quote_and_moves_generation() {
    let root = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(root.path(), Behaviour::Honest, None).unwrap();
    let dir = root.path().join("req");
    request(root.path(), "req", &[1; 64]);
    std::fs::write(dir.join("inblob"), [2u8; 64]).unwrap();
    wait_for("generation 2", || (generation(&dir) == 2).then_some(()));
    let q = std::fs::read(dir.join("outblob")).unwrap();
    assert_eq!(td(&q).report_data, [2; 64]);
}

#[test]
fn body_template_is_settable() {
    let root = tempfile::tempdir().unwrap();
    let body = TdReport::new()
        .with_mrtd([0xee; 48])
        .with_rtmr(1, [0x11; 48]);
    let k = ConfigfsKernel::start_with_body(root.path(), Behaviour::Honest, None, body.clone())
        .unwrap();
    let t = td(&request(root.path(), "a", &[3; 64]).quote);
    assert_eq!(t.mr_td, [0xee; 48]);
    assert_eq!(t.rt_mr1, [0x11; 48]);
    assert_eq!(t.rt_mr0, body.rtmrs[0]);

    k.set_body(TdReport::new().with_mrtd([0xdd; 48]));
    assert_eq!(k.body().mrtd, [0xdd; 48]);
    assert_eq!(
        td(&request(root.path(), "b", &[3; 64]).quote).mr_td,
        [0xdd; 48]
    );
}

#[test]
fn tampering_kernel_signs_a_different_report_data() {
    let root = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(root.path(), Behaviour::TamperReportData, None).unwrap();
    let rd = [0x42; 64];
    let o = request(root.path(), "r", &rd);
    assert_eq!(o.generations, [0, 1, 1]);
    let got = td(&o.quote).report_data; // verifies
    let flipped: u32 = got
        .iter()
        .zip(rd.iter())
        .map(|(a, b)| (a ^ b).count_ones())
        .sum();
    assert_eq!(flipped, 1);
}

#[test]
fn debug_kernel_sets_the_debug_bit() {
    let root = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(root.path(), Behaviour::Debug, None).unwrap();
    let q = request(root.path(), "r", &[0; 64]).quote;
    // dcap-qvl's verifier refuses debug TDs unless told otherwise.
    let e = verify(&q).unwrap_err();
    assert!(e.contains("Debug mode"), "{e}");
    let collateral: QuoteCollateralV3 = serde_json::from_slice(TestPki::collateral_json()).unwrap();
    let r = QuoteVerifier::new(TestPki::root_ca_der().to_vec())
        .allow_debug(true)
        .verify(&q, &collateral, now())
        .unwrap();
    assert_eq!(r.report.as_td10().unwrap().td_attributes[0] & 1, 1);
}

#[test]
fn racing_kernel_moves_generation_by_two() {
    let root = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(root.path(), Behaviour::Racing, None).unwrap();
    let o = request(root.path(), "r", &[9; 64]);
    assert_eq!(o.generations, [0, 2, 2]);
}

#[test]
fn wrong_provider_kernel_says_sev_guest() {
    let root = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(root.path(), Behaviour::WrongProvider, None).unwrap();
    let o = request(root.path(), "r", &[9; 64]);
    assert_eq!(o.provider, "sev_guest\n");
}

#[test]
fn big_quotes_are_over_8_kib_and_still_verify() {
    let root = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(root.path(), Behaviour::BigQuote, None).unwrap();
    let q = request(root.path(), "r", &[8; 64]).quote;
    assert_eq!(q.len(), BIG_QUOTE_LEN);
    assert!(q.len() > 8 * 1024);
    assert_eq!(verify(&q).unwrap().status, "UpToDate");
}

#[test]
fn odd_filesystem_states_do_not_stop_the_kernel() {
    let root = tempfile::tempdir().unwrap();
    let k = ConfigfsKernel::start(root.path(), Behaviour::Honest, None).unwrap();
    // A plain file in the root is not a request.
    std::fs::write(root.path().join("stray"), b"x").unwrap();
    // A short inblob gets no quote.
    let dir = root.path().join("short");
    std::fs::create_dir(&dir).unwrap();
    wait_for("generation", || {
        dir.join("generation").exists().then_some(())
    });
    std::fs::write(dir.join("inblob"), [0u8; 63]).unwrap();
    // A request directory that vanishes mid-way.
    let gone = root.path().join("gone");
    std::fs::create_dir(&gone).unwrap();
    wait_for("generation", || {
        gone.join("generation").exists().then_some(())
    });
    std::fs::remove_dir_all(&gone).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!dir.join("outblob").exists());
    assert_eq!(generation(&dir), 0);
    // The kernel still serves, and a reused name is a new request.
    let o = request(root.path(), "gone", &[4; 64]);
    assert_eq!(o.generations, [0, 1, 1]);
    assert_eq!(k.quotes_served(), 1);
}

#[test]
fn a_stopped_kernel_serves_nothing() {
    let root = tempfile::tempdir().unwrap();
    drop(ConfigfsKernel::start(root.path(), Behaviour::Honest, None).unwrap());
    let dir = root.path().join("late");
    std::fs::create_dir(&dir).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!dir.join("generation").exists());
}

fn rtmr_dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("measurements");
    (t, d)
}

#[test]
fn rtmr_device_exposes_four_registers() {
    let (_t, dir) = rtmr_dir();
    let dev = RtmrDevice::start(&dir, RtmrBehaviour::Honest).unwrap();
    let rtmrs = dev.current_rtmrs();
    assert_eq!(rtmrs, tdx_sim::quote::default_rtmrs());
    for (name, want) in RTMR_FILES.iter().zip(rtmrs.iter()) {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), want.to_vec());
    }
    assert_eq!(dev.current_rtmr3(), [0; 48]);
    assert_eq!(dev.extensions(), 0);
}

#[test]
fn agent_style_extensions_replay_and_reach_the_quote() {
    let (_t, dir) = rtmr_dir();
    let dev = RtmrDevice::start(&dir, RtmrBehaviour::Honest).unwrap();
    let path = dev.rtmr3_path();
    let log: Vec<[u8; 48]> = (1u8..=5).map(|i| [i.wrapping_mul(37); 48]).collect();
    for d in &log {
        let v = agent_extend(&path, d);
        assert_eq!(dev.current_rtmr3(), v);
    }
    let replayed = log.iter().fold([0u8; 48], |r, d| extend(&r, d));
    assert_eq!(dev.current_rtmr3(), replayed);
    assert_eq!(dev.extensions(), 5);

    let root = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(root.path(), Behaviour::Honest, Some(&dev)).unwrap();
    let t = td(&request(root.path(), "r", &[1; 64]).quote);
    assert_eq!(t.rt_mr3, replayed);

    // A later extension shows in the next quote.
    let v = agent_extend(&path, &[0xaa; 48]);
    assert_eq!(td(&request(root.path(), "r2", &[1; 64]).quote).rt_mr3, v);
}

#[test]
fn partial_writes_are_ignored() {
    let (_t, dir) = rtmr_dir();
    let dev = RtmrDevice::start(&dir, RtmrBehaviour::Honest).unwrap();
    let path = dev.rtmr3_path();
    std::fs::write(&path, [1u8; 47]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(&path, b"").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(&path, [1u8; 49]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(dev.extensions(), 0);
    assert_eq!(dev.current_rtmr3(), [0; 48]);
    // The protocol still works afterwards (the file's current content is not read as r).
    std::fs::write(&path, [0u8; 48]).unwrap(); // == current value: not a write
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(dev.extensions(), 0);
    assert_eq!(agent_extend(&path, &[2; 48]), extend(&[0; 48], &[2; 48]));
}

#[test]
fn extra_extension_never_replays() {
    let (_t, dir) = rtmr_dir();
    let dev = RtmrDevice::start(&dir, RtmrBehaviour::ExtraExtension).unwrap();
    let start = extend(&[0; 48], &unlogged_digest());
    assert_eq!(dev.current_rtmr3(), start);
    assert_eq!(std::fs::read(dev.rtmr3_path()).unwrap(), start.to_vec());

    // The agent logs only its own events; its replay never reaches the quoted value.
    let log = [[7u8; 48], [8u8; 48]];
    for d in &log {
        agent_extend(&dev.rtmr3_path(), d);
    }
    let replayed = log.iter().fold([0u8; 48], |r, d| extend(&r, d));
    let root = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(root.path(), Behaviour::Honest, Some(&dev)).unwrap();
    let quoted = td(&request(root.path(), "r", &[1; 64]).quote).rt_mr3;
    assert_eq!(quoted, dev.current_rtmr3());
    assert_ne!(quoted, replayed);
    assert_eq!(quoted, log.iter().fold(start, |r, d| extend(&r, d)));
}

#[test]
fn quotes_during_a_burst_of_extensions_carry_a_value_from_the_chain() {
    let (_t, dir) = rtmr_dir();
    let dev = RtmrDevice::start(&dir, RtmrBehaviour::Honest).unwrap();
    let root = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(root.path(), Behaviour::Honest, Some(&dev)).unwrap();
    let digests: Vec<[u8; 48]> = (0u16..100)
        .map(|i| tdx_sim::platform::derived(&format!("event {i}")))
        .collect();
    let chain: Vec<[u8; 48]> = digests
        .iter()
        .scan([0u8; 48], |r, d| {
            *r = extend(r, d);
            Some(*r)
        })
        .collect();
    let path = dev.rtmr3_path();
    let quoted = std::thread::scope(|s| {
        let agent = s.spawn(|| {
            for d in &digests {
                agent_extend(&path, d);
            }
        });
        let mut quoted = Vec::new();
        for i in 0..5 {
            quoted.push(td(&request(root.path(), &format!("q{i}"), &[0; 64]).quote).rt_mr3);
        }
        agent.join().unwrap();
        quoted
    });
    for q in quoted {
        assert!(
            q == [0; 48] || chain.contains(&q),
            "quoted RTMR3 not on the chain"
        );
    }
    assert_eq!(dev.current_rtmr3(), *chain.last().unwrap());
    assert_eq!(dev.extensions(), 100);
}
