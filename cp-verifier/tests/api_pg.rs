//! Every scenario of `api.rs`, on control planes whose fleet state is in PostgreSQL
//! (a throwaway cluster; see `harness/pg.rs`). The harness picks the store from the
//! crate name (`*_pg`); the test bodies are `api.rs`'s own.

#[path = "api.rs"]
mod api;
