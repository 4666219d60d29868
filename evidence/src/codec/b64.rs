//! Base64 as the DSSE envelope and the public-key JSON carry it.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

use crate::error::EvidenceError;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes base64 in either alphabet, with or without padding (DSSE allows both);
/// `what` names the field in the error.
pub fn decode(what: &'static str, s: &str) -> Result<Vec<u8>, EvidenceError> {
    STD_LENIENT
        .decode(s)
        .or_else(|_| URL_LENIENT.decode(s))
        .map_err(|_| EvidenceError::Base64 { what })
}

/// Encodes as standard base64 with padding, the form Provenant produces.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_alphabets_with_or_without_padding() {
        let bytes = [0xfb, 0xff, 0x01];
        assert_eq!(encode(&bytes), "+/8B");
        for s in ["+/8B", "-_8B"] {
            assert_eq!(decode("x", s).unwrap(), bytes);
        }
        assert_eq!(decode("x", "+/8").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode("x", "+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(
            decode("field", "+/8*").unwrap_err(),
            EvidenceError::Base64 { what: "field" }
        );
    }
}
