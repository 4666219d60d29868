//! Stage 6, act: what the control plane does about a finding. Alerts go to the
//! log, the audit log and webhooks ([`alerts`]), at most once per cooldown
//! ([`cooldown`]); unenrolled floods are aggregated per source ([`unenrolled`]); operators
//! set expectations ([`operator`]).

pub mod ack;
pub mod alerts;
pub mod cooldown;
pub mod operator;
pub mod unenrolled;
