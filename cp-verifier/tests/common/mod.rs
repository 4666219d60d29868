//! Shared by the CLI tests: run the built `cp-verifier` binary.

use std::process::Command;

use serde_json::Value;

/// Runs `cp-verifier <args..>`; returns the exit code and stdout as JSON (`Null` if
/// stdout is not JSON).
pub(crate) fn cp_verifier(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_cp-verifier"))
        .args(args)
        .output()
        .expect("run cp-verifier");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().expect("exit code"), json)
}
