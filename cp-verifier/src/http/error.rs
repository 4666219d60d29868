//! The one HTTP error type. A client error keeps its status and a typed reason; an
//! internal error says nothing internal to the client and is logged instead.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use evidence::api::{ErrorBody, ErrorInfo};
use evidence::EvidenceError;

/// Why a request was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not what the endpoint reads (format, size, encoding, fields).
    #[error("{kind}: {detail}")]
    BadRequest {
        /// The typed reason (`MalformedBody`, `InvalidField`, ...).
        kind: &'static str,
        /// What is wrong, for the client.
        detail: String,
    },
    /// The body is over the endpoint's limit.
    #[error("TooLarge: {0}")]
    TooLarge(String),
    /// A signature did not verify.
    #[error("BadSignature: {0}")]
    BadSignature(String),
    /// The challenge is unknown, used or expired.
    #[error("BadChallenge: {0}")]
    BadChallenge(String),
    /// The key is not enrolled for this agent.
    #[error("Unenrolled: {0}")]
    Unenrolled(String),
    /// The platform evidence (quote, TDREPORT, event log) was refused; `kind` names
    /// the check (`QuoteVerificationFailed`, `DebugTd`, `Rtmr3Mismatch`, ...).
    #[error("{kind}: {detail}")]
    Attestation {
        /// The check that refused.
        kind: &'static str,
        /// What it found.
        detail: String,
        /// The advisory ids behind a TCB status refusal (`INTEL-SA-...`), else empty.
        advisories: Vec<String>,
    },
    /// The policy does not accept this evidence tier.
    #[error("TierNotAllowed: {0}")]
    TierNotAllowed(String),
    /// The agent asks for a heartbeat interval longer than the policy allows.
    #[error("IntervalTooLong: {0}")]
    IntervalTooLong(String),
    /// No agent is registered under this id.
    #[error("UnknownAgent: {0}")]
    UnknownAgent(String),
    /// The pulse was seen before, or does not continue the agent's chain.
    #[error("Replay: {0}")]
    Replay(String),
    /// The pulse's timestamp is outside the allowed skew. Not a compromise signal.
    #[error("ClockDesync: {0}")]
    ClockDesync(String),
    /// A read or operator endpoint without the right bearer token.
    #[error("Unauthorized: {0}")]
    Unauthorized(String),
    /// No such route or resource.
    #[error("NotFound: {0}")]
    NotFound(String),
    /// Storage is unavailable; nothing was recorded, the client may retry.
    #[error("StoreUnavailable")]
    StoreUnavailable(String),
    /// A bounded resource of the control plane is in full use (e.g. every event
    /// stream slot); the client may retry later (503 `Busy`).
    #[error("Busy: {0}")]
    Busy(String),
    /// A known agent's fresh evidence could not be verified because an upstream the
    /// verification needs (collateral, provenance, storage) is unavailable: not a
    /// judgement of the agent, which keeps its current registration. `upstream` is the
    /// upstream's own kind (`CollateralUnavailable`, `ProvenanceUnavailable`, ...).
    #[error("UpstreamUnavailable: {upstream}: {detail}")]
    UpstreamUnavailable {
        /// The upstream's own kind.
        upstream: String,
        /// The upstream's error.
        detail: String,
    },
    /// A registration sent only the tail of its RTMR3 event log, and this control
    /// plane does not hold the prefix it continues (`EventLogPrefixUnknown`) or the
    /// prefix does not lead to the quoted RTMR3 (`EventLogPrefixMismatch`): send the
    /// whole log.
    #[error("{kind}: {detail}")]
    EventLogPrefix {
        /// `EventLogPrefixUnknown` or `EventLogPrefixMismatch`.
        kind: &'static str,
        /// The counts and values that disagree.
        detail: String,
    },
    /// A failure of the control plane itself: logged, never echoed to the client.
    #[error("Internal")]
    Internal(String),
    /// The agent may no longer speak: deleted or disabled by an operator, its
    /// enrollment no longer holds, or it runs a withdrawn build. The detail starts
    /// with the typed reason (`AgentDisabled`, `CertificateRevoked`, `CrlStale`, ...).
    #[error("Revoked: {0}")]
    Revoked(String),
    /// The build (agent binary or MRTD) was withdrawn fleet-wide; it may not register.
    #[error("Withdrawn: {0}")]
    Withdrawn(String),
    /// The alert was acknowledged already (409); the detail says by whom and when.
    #[error("AlreadyAcknowledged: {0}")]
    AlreadyAcknowledged(String),
}

/// The attest stage's refusals on the wire: a judged refusal and an upstream outage
/// are both 403 `Attestation` with their typed kind (a registration that could not
/// be judged is refused, never accepted); a missing event-log prefix is 409.
impl From<crate::attest::AttestError> for ApiError {
    fn from(e: crate::attest::AttestError) -> ApiError {
        use crate::attest::AttestError as A;
        match e {
            A::Refused {
                kind,
                detail,
                advisories,
                ..
            } => ApiError::Attestation {
                kind,
                detail,
                advisories,
            },
            A::Unavailable { kind, detail } => ApiError::Attestation {
                kind,
                detail,
                advisories: Vec::new(),
            },
            A::EventLogPrefix { kind, detail } => ApiError::EventLogPrefix { kind, detail },
            A::Internal(d) => ApiError::Internal(d),
            // `AttestError` is non_exhaustive for other crates only; every variant is
            // mapped above.
        }
    }
}

/// An enrollment refusal at registration: malformed certificates are the client's
/// error (400), a revoked certificate or an unusable CRL is `Revoked`, the rest
/// `Unenrolled`.
impl From<crate::register::enroll::EnrollError> for ApiError {
    fn from(e: crate::register::enroll::EnrollError) -> ApiError {
        use crate::register::enroll::Refusal;
        match e.reason {
            Refusal::BadCertificate => ApiError::bad_request("BadCertificate", e.detail),
            Refusal::TooManyCertificates => ApiError::bad_request("InvalidField", e.detail),
            Refusal::CertificateRevoked | Refusal::CrlStale | Refusal::CrlUnusable => {
                ApiError::Revoked(e.to_string())
            }
            _ => {
                debug_assert!(e.is_unenrolled());
                ApiError::Unenrolled(e.to_string())
            }
        }
    }
}

/// Storage failures: an outage is 503 `StoreUnavailable` (the client may retry);
/// anything else is the control plane's own fault, logged and never echoed.
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        match e {
            crate::store::StoreError::Unavailable(d) => ApiError::StoreUnavailable(d),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::register::error::ClockSkew> for ApiError {
    fn from(e: crate::register::error::ClockSkew) -> ApiError {
        ApiError::ClockDesync(e.to_string())
    }
}

impl From<crate::judge::baseline::InventoryError> for ApiError {
    fn from(e: crate::judge::baseline::InventoryError) -> ApiError {
        ApiError::bad_request("InconsistentInventory", e.0)
    }
}

impl From<crate::register::error::Revocation> for ApiError {
    fn from(e: crate::register::error::Revocation) -> ApiError {
        use crate::register::error::Revocation as R;
        match e {
            R::Revoked(d) => ApiError::Revoked(d),
            R::Withdrawn(d) => ApiError::Withdrawn(d),
            R::UnknownAgent(d) => ApiError::UnknownAgent(d),
            R::Store(e) => e.into(),
        }
    }
}

/// The register stage's refusals on the wire.
impl From<crate::register::error::RegisterError> for ApiError {
    fn from(e: crate::register::error::RegisterError) -> ApiError {
        use crate::register::error::RegisterError as R;
        match e {
            R::Envelope(e) => e.into(),
            R::BadField { kind, detail } => ApiError::bad_request(kind, detail),
            R::TierNotAllowed(d) => ApiError::TierNotAllowed(d),
            R::BadChallenge(d) => ApiError::BadChallenge(d),
            R::Enroll(e) => e.into(),
            R::ClockSkew(e) => e.into(),
            R::Inventory(e) => e.into(),
            R::IntervalTooLong(d) => ApiError::IntervalTooLong(d),
            R::Attest(e) => e.into(),
            R::TierDowngrade(detail) => ApiError::Attestation {
                kind: "TierDowngrade",
                detail,
                advisories: Vec::new(),
            },
            R::Revocation(e) => e.into(),
            R::UpstreamUnavailable { upstream, detail } => ApiError::UpstreamUnavailable {
                upstream: upstream.to_string(),
                detail,
            },
            R::LostRace => {
                ApiError::Replay("a concurrent registration for this agent won; retry".into())
            }
            R::Store(e) => e.into(),
        }
    }
}

/// The heartbeat stage's refusals on the wire: every replay rule is `Replay`.
impl From<crate::heartbeat::error::PulseError> for ApiError {
    fn from(e: crate::heartbeat::error::PulseError) -> ApiError {
        use crate::heartbeat::error::PulseError as P;
        match e {
            P::Envelope(e) => e.into(),
            P::Revocation(e) => e.into(),
            P::WrongPartition(d) => ApiError::bad_request("InvalidField", d),
            P::Replay { detail, .. } => ApiError::Replay(detail),
            P::ClockSkew(e) => e.into(),
            P::Inventory(e) => e.into(),
            P::Store(e) => e.into(),
        }
    }
}

impl ApiError {
    /// The typed reason the wire carries in `error.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest { kind, .. }
            | ApiError::Attestation { kind, .. }
            | ApiError::EventLogPrefix { kind, .. } => kind,
            ApiError::UpstreamUnavailable { .. } => "UpstreamUnavailable",
            ApiError::TooLarge(_) => "TooLarge",
            ApiError::BadSignature(_) => "BadSignature",
            ApiError::BadChallenge(_) => "BadChallenge",
            ApiError::Unenrolled(_) => "Unenrolled",
            ApiError::TierNotAllowed(_) => "TierNotAllowed",
            ApiError::IntervalTooLong(_) => "IntervalTooLong",
            ApiError::UnknownAgent(_) => "UnknownAgent",
            ApiError::Replay(_) => "Replay",
            ApiError::ClockDesync(_) => "ClockDesync",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::NotFound(_) => "NotFound",
            ApiError::StoreUnavailable(_) => "StoreUnavailable",
            ApiError::Busy(_) => "Busy",
            ApiError::Internal(_) => "Internal",
            ApiError::Revoked(_) => "Revoked",
            ApiError::Withdrawn(_) => "Withdrawn",
            ApiError::AlreadyAcknowledged(_) => "AlreadyAcknowledged",
        }
    }

    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadSignature(_)
            | ApiError::Attestation { .. }
            | ApiError::BadChallenge(_)
            | ApiError::Unenrolled(_)
            | ApiError::TierNotAllowed(_)
            | ApiError::IntervalTooLong(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownAgent(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Replay(_) => StatusCode::CONFLICT,
            ApiError::ClockDesync(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::StoreUnavailable(_)
            | ApiError::Busy(_)
            | ApiError::UpstreamUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::EventLogPrefix { .. } | ApiError::AlreadyAcknowledged(_) => {
                StatusCode::CONFLICT
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Revoked(_) | ApiError::Withdrawn(_) => StatusCode::FORBIDDEN,
        }
    }

    /// What the client is told (an internal failure's cause is logged, never told).
    pub fn public_detail(&self) -> String {
        self.detail()
    }

    fn detail(&self) -> String {
        match self {
            ApiError::BadRequest { detail, .. }
            | ApiError::Attestation { detail, .. }
            | ApiError::EventLogPrefix { detail, .. } => detail.clone(),
            ApiError::UpstreamUnavailable { upstream, detail } => format!(
                "the control plane cannot verify fresh evidence now ({upstream}: {detail}); \
                 the agent's current registration stays valid, retry later"
            ),
            ApiError::TooLarge(d)
            | ApiError::BadSignature(d)
            | ApiError::BadChallenge(d)
            | ApiError::Unenrolled(d)
            | ApiError::TierNotAllowed(d)
            | ApiError::IntervalTooLong(d)
            | ApiError::UnknownAgent(d)
            | ApiError::Replay(d)
            | ApiError::ClockDesync(d)
            | ApiError::Unauthorized(d)
            | ApiError::Busy(d)
            | ApiError::NotFound(d) => d.clone(),
            ApiError::StoreUnavailable(_) => {
                "storage is unavailable; nothing was recorded, retry later".into()
            }
            ApiError::Internal(_) => "internal error; see the control plane's log".into(),
            ApiError::Revoked(d) | ApiError::Withdrawn(d) | ApiError::AlreadyAcknowledged(d) => {
                d.clone()
            }
        }
    }

    /// A 400 with a typed reason.
    pub fn bad_request(kind: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            kind,
            detail: detail.into(),
        }
    }
}

impl From<EvidenceError> for ApiError {
    fn from(e: EvidenceError) -> Self {
        match e {
            EvidenceError::BadSignature { .. } => ApiError::BadSignature(e.to_string()),
            EvidenceError::TooLarge { .. } => ApiError::TooLarge(e.to_string()),
            other => ApiError::bad_request(other.kind(), other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(d) | ApiError::StoreUnavailable(d) => {
                tracing::error!(error = %d, kind = self.kind(), "request failed")
            }
            _ => tracing::debug!(kind = self.kind(), detail = %self.detail(), "request refused"),
        }
        let body = ErrorBody {
            error: ErrorInfo {
                kind: self.kind().to_string(),
                detail: self.detail(),
                advisories: match &self {
                    ApiError::Attestation { advisories, .. } => advisories.clone(),
                    _ => Vec::new(),
                },
            },
        };
        let mut r = (self.status(), Json(body)).into_response();
        r.extensions_mut().insert(RefusalKind(self.kind()));
        r
    }
}

/// The refusal's `kind`, kept on the response for the request log line.
#[derive(Debug, Clone, Copy)]
pub struct RefusalKind(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::error::{PulseError, ReplayKind};
    use crate::register::error::{ClockSkew, RegisterError, Revocation};
    use crate::store::StoreError;
    use std::time::Duration;

    fn wire(e: impl Into<ApiError>) -> (u16, &'static str, String) {
        let e = e.into();
        (e.status().as_u16(), e.kind(), e.detail())
    }

    /// The stage errors' wire kinds and statuses are part of the API: pinned here,
    /// so a change to a stage error cannot move them by accident.
    #[test]
    fn stage_errors_keep_their_wire_kind_and_status() {
        let skew = ClockSkew {
            what: "pulse",
            skew: Duration::from_millis(61_500),
            ahead: true,
            allowed: Duration::from_secs(60),
        };
        assert_eq!(
            wire(skew.clone()),
            (
                422,
                "ClockDesync",
                "pulse timestamp is 61.500s ahead of the control plane's clock (allowed skew 60s); check the node's time sync".into()
            )
        );
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                RegisterError::bad_field("BadBase64", "x").into(),
                400,
                "BadBase64",
            ),
            (
                RegisterError::TierNotAllowed("x".into()).into(),
                403,
                "TierNotAllowed",
            ),
            (
                RegisterError::BadChallenge("x".into()).into(),
                403,
                "BadChallenge",
            ),
            (
                RegisterError::ClockSkew(skew.clone()).into(),
                422,
                "ClockDesync",
            ),
            (
                RegisterError::Inventory(crate::judge::baseline::InventoryError("x".into())).into(),
                400,
                "InconsistentInventory",
            ),
            (
                RegisterError::IntervalTooLong("x".into()).into(),
                403,
                "IntervalTooLong",
            ),
            (
                RegisterError::TierDowngrade("x".into()).into(),
                403,
                "TierDowngrade",
            ),
            (
                RegisterError::UpstreamUnavailable {
                    upstream: "CollateralUnavailable",
                    detail: "x".into(),
                }
                .into(),
                503,
                "UpstreamUnavailable",
            ),
            (RegisterError::LostRace.into(), 409, "Replay"),
            (
                RegisterError::Store(StoreError::Unavailable("disk".into())).into(),
                503,
                "StoreUnavailable",
            ),
            (
                RegisterError::Revocation(Revocation::Withdrawn("x".into())).into(),
                403,
                "Withdrawn",
            ),
            (Revocation::Revoked("x".into()).into(), 403, "Revoked"),
            (
                Revocation::UnknownAgent("x".into()).into(),
                404,
                "UnknownAgent",
            ),
            (
                PulseError::WrongPartition("x".into()).into(),
                400,
                "InvalidField",
            ),
            (PulseError::ClockSkew(skew).into(), 422, "ClockDesync"),
            (StoreError::Conflict.into(), 500, "Internal"),
        ];
        for (e, status, kind) in cases {
            assert_eq!((e.status().as_u16(), e.kind()), (status, kind), "{e:?}");
        }
        for k in [
            ReplayKind::Duplicate,
            ReplayKind::OldCapture,
            ReplayKind::Fork,
            ReplayKind::ChainBroken,
            ReplayKind::NonceReused,
            ReplayKind::LostRace,
        ] {
            assert_eq!(
                wire(PulseError::replay(k, "seen")),
                (409, "Replay", "seen".into())
            );
        }
    }
}
