//! A minimal DER writer: just what a Fulcio-style leaf certificate needs.

pub(crate) fn len(n: usize) -> Vec<u8> {
    if let Ok(short) = u8::try_from(n) {
        if short < 0x80 {
            return vec![short];
        }
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|&b| b == 0)
        .collect();
    let mut out = vec![0x80 | u8::try_from(bytes.len()).unwrap_or(0)];
    out.extend(bytes);
    out
}

pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(len(content.len()));
    out.extend_from_slice(content);
    out
}

pub(crate) fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

pub(crate) fn octets(content: &[u8]) -> Vec<u8> {
    tlv(0x04, content)
}

pub(crate) fn utf8(s: &str) -> Vec<u8> {
    tlv(0x0c, s.as_bytes())
}

pub(crate) fn boolean(v: bool) -> Vec<u8> {
    tlv(0x01, &[if v { 0xff } else { 0x00 }])
}

/// A positive INTEGER from big-endian magnitude bytes (minimal, sign byte added).
pub(crate) fn uint(magnitude: &[u8]) -> Vec<u8> {
    let mut b: Vec<u8> = magnitude.iter().copied().skip_while(|&b| b == 0).collect();
    if b.first().is_none_or(|&f| f & 0x80 != 0) {
        b.insert(0, 0);
    }
    tlv(0x02, &b)
}

/// An OBJECT IDENTIFIER from its arcs.
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let (first, second) = (
        arcs.first().copied().unwrap_or(0),
        arcs.get(1).copied().unwrap_or(0),
    );
    let mut all = vec![first * 40 + second];
    all.extend(arcs.iter().skip(2).copied());
    for arc in all {
        let mut groups = vec![u8::try_from(arc & 0x7f).unwrap_or(0)];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | u8::try_from(rest & 0x7f).unwrap_or(0));
            rest >>= 7;
        }
        groups.reverse();
        body.extend(groups);
    }
    tlv(0x06, &body)
}

/// One `Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }`.
pub(crate) fn extension(arcs: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![oid(arcs)];
    if critical {
        parts.push(boolean(true));
    }
    parts.push(octets(value));
    seq(&parts)
}

/// A certificate Time: UTCTime before 2050, GeneralizedTime from then on (RFC 5280).
pub(crate) fn time(unix: i64) -> Result<Vec<u8>, crate::Error> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| crate::Error::Time(e.to_string()))?;
    let (y, mo, d, h, mi, s) = (
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    );
    if (1950..2050).contains(&y) {
        let text = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        Ok(tlv(0x17, text.as_bytes()))
    } else {
        let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        Ok(tlv(0x18, text.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_encode_like_openssl() {
        // 1.3.6.1.4.1.57264.1.8
        assert_eq!(
            hex::encode(oid(&[1, 3, 6, 1, 4, 1, 57264, 1, 8])),
            "060a2b0601040183bf300108"
        );
        // 1.2.840.10045.4.3.3 (ecdsa-with-SHA384)
        assert_eq!(
            hex::encode(oid(&[1, 2, 840, 10045, 4, 3, 3])),
            "06082a8648ce3d040303"
        );
    }

    #[test]
    fn times_switch_to_generalized_in_2050() {
        assert_eq!(time(0).unwrap(), tlv(0x17, b"700101000000Z"));
        assert_eq!(time(2_524_608_000).unwrap(), tlv(0x18, b"20500101000000Z"));
    }
}
