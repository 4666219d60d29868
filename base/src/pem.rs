//! PEM (RFC 7468) text: splitting a file into its blocks, decoding one, encoding DER.
//! The one PEM reader of the project: certificate bundles, public keys, trust
//! anchors and CRLs all go through it.
//!
//! Text outside blocks is ignored, as RFC 7468 allows. A block without its END line
//! is an error, never silently dropped. Base64 inside a block may be wrapped and
//! indented; any other character is an error.

use base64::Engine as _;

/// Why PEM text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// The bytes are not UTF-8 text.
    #[error("not UTF-8 text (PEM expected)")]
    NotText,
    /// A `-----BEGIN` line without a closing `-----`.
    #[error("unterminated PEM header")]
    BadHeader,
    /// A block without its END line.
    #[error("unterminated {label} PEM block")]
    Unterminated {
        /// The block's label.
        label: String,
    },
    /// The block's body is not base64.
    #[error("{label} PEM: {detail}")]
    Base64 {
        /// The block's label.
        label: String,
        /// What the decoder said.
        detail: String,
    },
}

/// One PEM block: its label and its full text (BEGIN and END lines included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block<'a> {
    /// The label, e.g. `CERTIFICATE`, `PUBLIC KEY`.
    pub label: &'a str,
    /// The block as written, from `-----BEGIN` to the end of its END line's dashes.
    pub text: &'a str,
    body: &'a str,
}

impl Block<'_> {
    /// The block's DER contents.
    pub fn der(&self) -> Result<Vec<u8>, PemError> {
        let b64: String = self.body.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| PemError::Base64 {
                label: self.label.to_string(),
                detail: e.to_string(),
            })
    }
}

/// Every block in `text`, in order, whatever its label.
pub fn blocks(text: &str) -> Result<Vec<Block<'_>>, PemError> {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(found) = text[pos..].find(BEGIN) {
        let start = pos + found;
        let label_start = start + BEGIN.len();
        let label_len = text[label_start..]
            .find("-----")
            .ok_or(PemError::BadHeader)?;
        let label = &text[label_start..label_start + label_len];
        let body_start = label_start + label_len + "-----".len();
        let end = format!("-----END {label}-----");
        let body_len = text[body_start..]
            .find(&end)
            .ok_or_else(|| PemError::Unterminated {
                label: label.to_string(),
            })?;
        let stop = body_start + body_len + end.len();
        out.push(Block {
            label,
            text: &text[start..stop],
            body: &text[body_start..body_start + body_len],
        });
        pos = stop;
    }
    Ok(out)
}

/// [`blocks`] of bytes that must be UTF-8 text.
pub fn blocks_in(data: &[u8]) -> Result<Vec<Block<'_>>, PemError> {
    blocks(std::str::from_utf8(data).map_err(|_| PemError::NotText)?)
}

/// The `CERTIFICATE` blocks of a bundle, each as its own PEM text (with a trailing
/// newline), for parsers that take one certificate's PEM at a time.
pub fn certificates(text: &str) -> Result<Vec<String>, PemError> {
    Ok(blocks(text)?
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .map(|b| format!("{}\n", b.text))
        .collect())
}

/// PEM-encodes `der` under `label`: 64-character lines, trailing newline.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_labels() {
        let a = encode("CERTIFICATE", &[1, 2, 3]);
        let k = encode("PUBLIC KEY", &[9; 100]);
        let text = format!("junk before\n{a}between\n{k}after");
        let bs = blocks(&text).unwrap();
        assert_eq!(bs.len(), 2);
        assert_eq!(
            (bs[0].label, bs[0].der().unwrap()),
            ("CERTIFICATE", vec![1, 2, 3])
        );
        assert_eq!(
            (bs[1].label, bs[1].der().unwrap()),
            ("PUBLIC KEY", vec![9; 100])
        );
        assert_eq!(certificates(&text).unwrap(), vec![a.clone()]);
        assert_eq!(blocks_in(text.as_bytes()).unwrap().len(), 2);
        assert!(blocks("no pem here").unwrap().is_empty());
    }

    #[test]
    fn refusals_are_typed() {
        let a = encode("CERTIFICATE", &[1, 2, 3]);
        let cut = &a[..a.len() - 10];
        assert_eq!(
            blocks(cut),
            Err(PemError::Unterminated {
                label: "CERTIFICATE".into()
            })
        );
        assert_eq!(blocks("-----BEGIN CERT"), Err(PemError::BadHeader));
        let bad = "-----BEGIN X-----\n!!!!\n-----END X-----\n";
        assert!(matches!(
            blocks(bad).unwrap()[0].der(),
            Err(PemError::Base64 { .. })
        ));
        assert_eq!(blocks_in(&[0xff, 0xfe]), Err(PemError::NotText));
    }
}
