//! The in-toto statement a DSSE bundle carries, parsed and bounded.

use std::collections::BTreeMap;

use super::VerifyError;

/// Most subjects reported from one in-toto statement. `actions/attest` writes one
/// per artifact; a release with thousands is not something we attest.
pub const MAX_SUBJECTS: usize = 1024;

/// The DSSE payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Accepted in-toto statement `_type` values.
const IN_TOTO_STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];

/// One in-toto subject.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subject {
    /// Its name (may be empty).
    pub name: String,
    /// Algorithm → lowercase hex.
    pub digest: BTreeMap<String, String>,
}

/// The in-toto statement of a DSSE bundle.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Statement {
    /// `_type`.
    pub statement_type: String,
    /// `predicateType`.
    pub predicate_type: String,
    /// `predicate` (an empty object when omitted).
    pub predicate: serde_json::Value,
    /// `subject`.
    pub subjects: Vec<Subject>,
}

pub(super) fn parse_statement(payload: &[u8]) -> Result<Statement, VerifyError> {
    #[derive(serde::Deserialize)]
    struct RawSubject {
        #[serde(default)]
        name: String,
        digest: BTreeMap<String, String>,
    }
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "_type")]
        statement_type: String,
        subject: Vec<RawSubject>,
        #[serde(rename = "predicateType")]
        predicate_type: String,
        #[serde(default)]
        predicate: Option<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(payload)
        .map_err(|e| VerifyError::InvalidStatement(e.to_string()))?;
    // Gap wrapped: sigstore-verify parses the statement only to bind subjects; it
    // does not check `_type`. A payload that is not an in-toto statement is refused.
    if !IN_TOTO_STATEMENT_TYPES.contains(&raw.statement_type.as_str()) {
        return Err(VerifyError::InvalidStatement(format!(
            "unsupported _type {:?}",
            raw.statement_type.chars().take(200).collect::<String>()
        )));
    }
    if raw.subject.is_empty() || raw.subject.len() > MAX_SUBJECTS {
        return Err(VerifyError::InvalidStatement(format!(
            "{} subjects (1 to {MAX_SUBJECTS} required)",
            raw.subject.len()
        )));
    }
    let subjects = raw
        .subject
        .into_iter()
        .map(|s| Subject {
            name: s.name,
            digest: s
                .digest
                .into_iter()
                .map(|(a, h)| (a, h.to_ascii_lowercase()))
                .collect(),
        })
        .collect();
    Ok(Statement {
        statement_type: raw.statement_type,
        predicate_type: raw.predicate_type,
        predicate: raw
            .predicate
            .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
        subjects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_checked() {
        let ok = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"AB"}}],"predicateType":"p"}"#;
        let s = parse_statement(ok).unwrap();
        assert_eq!(s.subjects[0].digest["sha256"], "ab");
        assert_eq!(s.predicate, serde_json::json!({}));
        for bad in [
            &br#"{"_type":"x","subject":[{"digest":{}}],"predicateType":"p"}"#[..],
            br#"{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p"}"#,
            br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p"}"#,
            b"null",
        ] {
            assert_eq!(parse_statement(bad).unwrap_err().kind(), "InvalidStatement");
        }
    }
}
