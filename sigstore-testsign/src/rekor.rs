//! The TEST Rekor log: RFC 6962 Merkle trees, inclusion proofs, signed checkpoints
//! (signed-note format) and signed entry timestamps.

use sha2::{Digest, Sha256};

/// RFC 6962 leaf hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Merkle tree hash (RFC 6962 MTH) over leaf hashes. Empty input gives SHA-256("").
pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => Sha256::digest(b"").into(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// RFC 6962 audit path (PATH(m, D[n])) for leaf `index`, leaf level first.
pub fn inclusion_path(index: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    if index < k {
        let mut path = inclusion_path(index, &leaves[..k]);
        path.push(root(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_path(index - k, &leaves[k..]);
        path.push(root(&leaves[..k]));
        path
    }
}

/// The body of a checkpoint (the signed part of the note): origin, tree size and
/// base64 root hash, one per line.
pub fn checkpoint_body(origin: &str, tree_size: u64, root_hash: &[u8; 32]) -> String {
    use base64::Engine as _;
    format!(
        "{origin}\n{tree_size}\n{}\n",
        base64::engine::general_purpose::STANDARD.encode(root_hash)
    )
}

/// A signed note: the body, a blank line, and one signature line
/// `— NAME base64(key_hint[4] || signature)`.
pub fn signed_note(body: &str, name: &str, key_hint: &[u8], signature: &[u8]) -> String {
    use base64::Engine as _;
    let mut sig = key_hint.to_vec();
    sig.extend_from_slice(signature);
    format!(
        "{body}\n\u{2014} {name} {}\n",
        base64::engine::general_purpose::STANDARD.encode(sig)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recompute the root from a leaf and its audit path (RFC 9162 §2.1.3.2).
    fn root_from_path(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]]) -> [u8; 32] {
        let (mut fnode, mut snode) = (index, size - 1);
        let mut r = leaf;
        for p in path {
            if fnode % 2 == 1 || fnode == snode {
                r = node_hash(p, &r);
                while fnode % 2 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        assert_eq!(snode, 0);
        r
    }

    #[test]
    fn every_path_of_every_small_tree_reaches_the_root() {
        for n in 1usize..=20 {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let r = root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let path = inclusion_path(i, &leaves);
                let got = root_from_path(
                    u64::try_from(i).unwrap(),
                    u64::try_from(n).unwrap(),
                    *leaf,
                    &path,
                );
                assert_eq!(got, r, "n={n} i={i}");
            }
        }
    }

    #[test]
    fn known_rfc6962_values() {
        // Empty tree and one-leaf tree, as in the RFC 6962 reference test vectors.
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
