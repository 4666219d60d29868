//! Operators acknowledge alerts (`POST /api/v1/alerts/{id}/ack`, or the form on the
//! alerts page). An acknowledged alert stays in the history, with who acknowledged
//! it, when and why, but leaves the open count. The acknowledgement is audited: an
//! `AlertAcknowledged` alert is written in the same transaction, so the history shows
//! it even if the acknowledged alert is later pruned.

use crate::http::error::ApiError;
use crate::model::{Ack, Alert, AlertKind};
use crate::plane::{store_err, ControlPlane};

/// Longest `by` an operator may give (characters).
pub const MAX_ACK_BY: usize = 64;
/// Longest note (characters).
pub const MAX_ACK_NOTE: usize = 512;

/// Characters that reorder or hide text (bidi controls, zero-width characters, line
/// and paragraph separators): refused like control characters, so an
/// acknowledgement cannot be made to read as something else.
fn spoofing(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Checks an operator-given field: bounded, printable, no control characters (it is
/// shown in pages and logs).
fn field(what: &str, v: &str, max: usize) -> Result<String, ApiError> {
    let v = v.trim();
    if v.chars().count() > max {
        return Err(ApiError::bad_request(
            "InvalidField",
            format!("{what} is longer than {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() || spoofing(c)) {
        return Err(ApiError::bad_request(
            "InvalidField",
            format!("{what} contains control, bidi or zero-width characters"),
        ));
    }
    Ok(v.to_owned())
}

impl ControlPlane {
    /// Acknowledges alert `id` for an operator authenticated by `how` (e.g.
    /// `operator token`), who calls themselves `by`, with `note`.
    pub async fn ack_alert(
        &self,
        id: &str,
        by: &str,
        how: &str,
        note: &str,
    ) -> Result<Alert, ApiError> {
        let by = field("by", by, MAX_ACK_BY)?;
        let note = field("note", note, MAX_ACK_NOTE)?;
        let Some(alert) = self.store.get_alert(id).await.map_err(store_err)? else {
            return Err(ApiError::NotFound(format!("no alert {id:?}")));
        };
        if let Some(a) = &alert.ack {
            return Err(already(id, a));
        }
        if !alert.is_open() {
            // Informational alerts (the audit of acknowledgements among them) are
            // records: acknowledging one would only write another.
            return Err(ApiError::bad_request(
                "NotOpen",
                format!(
                    "alert {id:?} is informational (severity {}): a record, never open",
                    alert.severity
                ),
            ));
        }
        let now = self.now();
        let who = if by.is_empty() {
            how.to_owned()
        } else {
            format!("{by} ({how})")
        };
        let ack = Ack {
            at_ns: now.get(),
            by: who.clone(),
            note: note.clone(),
        };
        let audit = vec![Alert::new(
            now,
            &alert.agent_id,
            AlertKind::AlertAcknowledged,
            format!(
                "alert {} ({}, severity {}) acknowledged by {who}{}",
                alert.id,
                alert.kind.as_str(),
                alert.severity,
                if note.is_empty() {
                    String::new()
                } else {
                    format!(": {note}")
                }
            ),
        )];
        if !self
            .store
            .ack_alert(id, &ack, &audit)
            .await
            .map_err(store_err)?
        {
            // Another operator (or replica) got there first, or the alert was pruned.
            return match self.store.get_alert(id).await.map_err(store_err)? {
                Some(Alert { ack: Some(a), .. }) => Err(already(id, &a)),
                _ => Err(ApiError::NotFound(format!("no alert {id:?}"))),
            };
        }
        self.alerts.emit(&audit);
        self.events.alerts(&audit);
        Ok(Alert {
            ack: Some(ack),
            ..alert
        })
    }
}

fn already(id: &str, a: &Ack) -> ApiError {
    ApiError::AlreadyAcknowledged(format!(
        "alert {id:?} was acknowledged by {} at {} ns",
        a.by, a.at_ns
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded_and_plain() {
        assert_eq!(field("by", "  alice ", 64).unwrap(), "alice");
        assert!(field("by", &"x".repeat(65), 64).is_err());
        assert_eq!(
            field("note", &"é".repeat(512), 512)
                .unwrap()
                .chars()
                .count(),
            512
        );
        for bad in [
            "a\nb",
            "a\u{202E}b",
            "a\u{200B}b",
            "a\u{2028}b",
            "\u{FEFF}a",
        ] {
            assert_eq!(
                field("note", bad, 512).unwrap_err().kind(),
                "InvalidField",
                "{bad:?}"
            );
        }
    }
}
