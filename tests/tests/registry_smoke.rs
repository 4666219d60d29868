//! The registry harness itself: a real `docker-registry` answers the distribution API.
use provenant_tests::registry::Registry;

#[test]
fn registry_answers_v2_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Registry::start(dir.path(), dir.path());
    let get = |u: &str| reqwest::blocking::get(u).map(|r| r.status().as_u16());
    assert_eq!(get(&format!("{}/v2/", r.url())).unwrap(), 200);
    r.stop();
    assert!(get(&format!("{}/v2/", r.url())).is_err());
    r.restart();
    assert_eq!(get(&format!("{}/v2/", r.url())).unwrap(), 200);
}
