//! Container image signatures: the shapes they are found in. Verification lives in
//! [`crate::cosign`]; discovery in a registry in [`crate::oci`].

use std::collections::BTreeMap;

/// One signature found for an image digest, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSignature {
    /// cosign's legacy simple-signing signature: the layer's payload bytes (a
    /// `application/vnd.dev.cosign.simplesigning.v1+json` document) and the OCI layer
    /// annotations cosign writes (`dev.cosignproject.cosign/signature`,
    /// `dev.sigstore.cosign/certificate`, `dev.sigstore.cosign/chain`,
    /// `dev.sigstore.cosign/bundle`).
    SimpleSigning {
        /// The signed payload, as stored (the signature covers these exact bytes).
        payload: Vec<u8>,
        /// The layer's annotations: signature, certificate, chain, Rekor bundle.
        annotations: BTreeMap<String, String>,
    },
    /// A Sigstore bundle (an OCI 1.1 referrer of artifact type
    /// `application/vnd.dev.sigstore.bundle.v0.3+json`, or a bundle file).
    Bundle(Vec<u8>),
}
