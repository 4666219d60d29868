//! Sigstore bundle verification for Provenant, offline and with an explicit time.
//!
//! # Trust boundary
//!
//! Everything this crate reads is untrusted: the bundle bytes (from GitHub's
//! attestations API, a registry or a file), and the artifact or digest it is said to
//! sign. What is trusted is given by the caller: a [`TrustRoot`] (a
//! `trusted_root.json` file the operator chose, or GitHub's embedded instance root,
//! only when explicitly asked for), an [`IdentityPolicy`] (who may have signed), and
//! `now`. A [`VerifiedBundle`] can only be made by [`verify_bundle`], and only when
//! all of the following hold:
//!
//! - the bundle is at most [`MAX_BUNDLE_BYTES`], JSON (its `bytes` fields base64 as
//!   protobuf-JSON reads them), media type v0.1, v0.2 or v0.3, keyless (a Fulcio
//!   certificate, and no root certificate in its chain);
//! - the certificate chains to a Fulcio CA of the root, with the code-signing EKU,
//!   valid at **every** verified signing time, and (public-good roots) its SCT
//!   verifies against a CT log of the root;
//! - a signing time is established from Rekor (SET over the integrated time) and/or
//!   RFC 3161 timestamps from TSAs of the root, and none lies after `now`;
//! - with a file root, at least one Rekor entry, each (whatever the bundle version)
//!   from a log of the root, with a Merkle inclusion proof up to a checkpoint signed
//!   by that log, its SET if present, and a body that describes this very signature,
//!   key and artifact;
//! - the DSSE signature over the PAE (or the message signature over the artifact)
//!   verifies with the certificate's key, and the artifact matches (an in-toto
//!   subject digest, or the message digest);
//! - the certificate's issuer, SAN and Fulcio extensions, and the statement's
//!   predicate type and subjects, satisfy the identity policy.
//!
//! The cryptographic steps are `sigstore-verify` 0.15.1's (sigstore/sigstore-rust),
//! run with a ring/RustCrypto backend ([`provider`](self)). This crate adds what it
//! leaves to callers or does not take as a parameter; each addition is commented
//! where it happens and has a test: bounded input, the media-type policy, `now`,
//! the log-ID check, the requirement of a transparency log entry with an inclusion
//! proof and checkpoint, protobuf-JSON base64, the root-in-chain check, the in-toto
//! statement's type, and the Fulcio-extension identity policy.
//!
//! A [`VerifiedKeyBundle`] is made by [`verify_bundle_with_key`] for a bundle signed
//! with a [`ManagedKey`] the caller trusts (no certificate, no identity): the same
//! checks, except the certificate's, with the signature verified by that key.
//!
//! `tests/conformance.rs` runs the Sigstore conformance suite's `bundle-verify`
//! cases through both, each refusal checked for its reason.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bundle;
pub mod cosign;
pub mod image;
pub mod oci;
mod provider;
pub mod verifier;

pub use bundle::{
    read_bundle_file, verify_bundle, verify_bundle_with_key, Artifact, ArtifactDigest,
    DigestAlgorithm, FulcioClaims, Instance, ManagedKey, Statement, Subject, TimeSource, TrustRoot,
    TrustRootError, VerifiedBundle, VerifiedKeyBundle, VerifyError, IN_TOTO_PAYLOAD_TYPE,
    MAX_BUNDLE_BYTES, MAX_KEY_BYTES, MAX_SUBJECTS, MAX_TRUSTED_ROOT_BYTES, MEDIA_TYPE_V0_1,
    MEDIA_TYPE_V0_2, MEDIA_TYPE_V0_3,
};
pub use cosign::{
    encode_signature_file, parse_signature_file, verify_any, verify_image_signature, ImageSigError,
    ImageTrust, ImageTrustError, ImageTrustParts, KeylessIdentity, VerifiedImageSignature,
};
pub use image::ImageSignature;
pub use policy::identity::{
    IdentityClaims, IdentityField, IdentityMismatch, IdentityPolicy, IdentityPolicyError,
    IdentityViolation,
};
