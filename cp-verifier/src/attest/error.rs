//! Why platform evidence was not accepted: the attest stage's own error, with no
//! HTTP in it. [`crate::http::error`] turns it into the wire error in one place.

/// A refusal of TDX evidence (quote, TDREPORT, RTMR3 event log, build provenance),
/// at registration or re-attestation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The evidence was judged and refused. `kind` is the typed reason the wire and
    /// dashboard show: a DCAP outcome (`MalformedQuote`, `QuoteVerificationFailed`,
    /// `NoMatchingTcbLevel`, ...), a policy reason (`DebugTd`, `TcbStatus`,
    /// `Rtmr3Mismatch`, ...) or a provenance one (`MrtdNotAttested`,
    /// `RtmrNotAttested`, ...).
    #[error("{kind}: {detail}")]
    Refused {
        /// The typed reason.
        kind: &'static str,
        /// What a person needs to see to act on it.
        detail: String,
        /// The advisory ids (`INTEL-SA-...`) behind a TCB status refusal, else empty.
        advisories: Vec<String>,
        /// What was compared, where the refusal can say (a register that does not
        /// match): kept with the refusal's alert.
        explain: Option<Box<crate::model::Explanation>>,
    },
    /// An upstream the verification needs is unavailable (`CollateralUnavailable`,
    /// `ProvenanceUnavailable`): the evidence was not judged.
    #[error("{kind}: {detail}")]
    Unavailable {
        /// Which upstream.
        kind: &'static str,
        /// The upstream's own error.
        detail: String,
    },
    /// Only the tail of the RTMR3 event log was sent, and this control plane does not
    /// hold the prefix it continues (`EventLogPrefixUnknown`) or the prefix does not
    /// lead to the quoted RTMR3 (`EventLogPrefixMismatch`): the agent must resend it
    /// whole.
    #[error("{kind}: {detail}")]
    EventLogPrefix {
        /// Which of the two.
        kind: &'static str,
        /// The counts and values that disagree.
        detail: String,
    },
    /// Not a judgement of the evidence: a stored quote that no longer decodes, an
    /// identity policy that cannot be built.
    #[error("internal: {0}")]
    Internal(String),
}

impl AttestError {
    /// A refusal of the evidence, named by its typed reason.
    pub(crate) fn refused(kind: &'static str, detail: impl Into<String>) -> AttestError {
        AttestError::Refused {
            kind,
            detail: detail.into(),
            advisories: Vec::new(),
            explain: None,
        }
    }

    /// The refusal with its explanation.
    pub(crate) fn with_explanation(mut self, e: crate::model::Explanation) -> AttestError {
        if let AttestError::Refused { explain, .. } = &mut self {
            *explain = Some(Box::new(e));
        }
        self
    }

    /// The explanation of a refusal, where it has one.
    pub fn explanation(&self) -> Option<&crate::model::Explanation> {
        match self {
            AttestError::Refused { explain, .. } => explain.as_deref(),
            _ => None,
        }
    }

    /// A refusal that names the TCB advisories behind it.
    pub(crate) fn with_advisories(mut self, ids: &[String]) -> AttestError {
        if let AttestError::Refused { advisories, .. } = &mut self {
            *advisories = ids.to_vec();
        }
        self
    }

    /// The advisory ids behind a TCB status refusal (empty for any other error).
    pub fn advisories(&self) -> &[String] {
        match self {
            AttestError::Refused { advisories, .. } => advisories,
            _ => &[],
        }
    }

    /// An upstream outage, named by the upstream's kind.
    pub(crate) fn unavailable(kind: &'static str, detail: impl Into<String>) -> AttestError {
        AttestError::Unavailable {
            kind,
            detail: detail.into(),
        }
    }

    /// The typed reason.
    pub fn kind(&self) -> &'static str {
        match self {
            AttestError::Refused { kind, .. }
            | AttestError::Unavailable { kind, .. }
            | AttestError::EventLogPrefix { kind, .. } => kind,
            AttestError::Internal(_) => "Internal",
        }
    }

    /// Whether the evidence could not be judged (an upstream or internal failure), as
    /// opposed to judged and refused: a known agent keeps its registration then.
    pub fn undecided(&self) -> bool {
        matches!(
            self,
            AttestError::Unavailable { .. } | AttestError::Internal(_)
        )
    }
}
