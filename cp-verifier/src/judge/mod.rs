//! Stage 5, judge: the facts a pulse or registration carries, compared with
//! last-known-good ([`baseline`]), the workload images checked against their
//! signatures ([`images`]), and the agent verdict and per-workload badges assembled
//! through `policy` ([`verdict`]). Nothing here talks HTTP.

pub mod baseline;
pub mod ear;
pub mod history;
pub mod images;
pub mod verdict;
