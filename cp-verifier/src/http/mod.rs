//! The HTTP edge: the router and its handlers ([`router`]), TLS/mTLS and connection
//! limits ([`transport`]), the one error type every refusal becomes ([`error`]), the
//! views the API and dashboard show ([`views`]) and the dashboard ([`dashboard`]).

pub mod agent_page;
pub mod auth;
pub mod ear;
pub mod error;
pub mod events;
pub mod fleet_query;
pub mod handlers;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod ratelimit;
pub mod reqid;
pub mod router;
pub mod transport;
pub mod views;
pub mod when;
