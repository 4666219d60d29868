//! Every scenario of `api.rs`, on control planes whose fleet state is in PostgreSQL
//! (a throwaway cluster; see `harness/pg.rs`). The harness picks the store from the
//! crate name (`*_pg`); the test bodies are `api.rs`'s own.

#[path = "api.rs"]
mod api;

/// The scenarios above really ran on PostgreSQL: the harness says so, and a control
/// plane it starts is backed by a `postgres://` store.
#[tokio::test]
async fn the_harness_chose_postgres() {
    assert!(api::harness::on_postgres());
    let cp = api::harness::start(|_| {}).await;
    let url = cp.cp.cfg.store.as_ref().expect("a postgres store");
    assert!(url.0.starts_with("postgres://"));
}
