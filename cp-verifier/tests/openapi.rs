//! The OpenAPI 3.1 documents (`GET /openapi.json`) of the control plane and of the
//! agent's local API, checked against the running servers: every route the routers
//! serve is documented (and every documented operation is served, with the access
//! it says), and real answers from both, success and refusal, are valid against the
//! schemas the served document gives for their status. Schemas are made strict for
//! the check (`additionalProperties: false` on every documented object), so a field
//! an answer carries but the document does not name fails too.

mod harness;
use harness::*;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cp_verifier::judge::ear::EarConfig;
use evidence::api::{RegisterEvidence, RegisterRequest};
use guest_agent::signer::{KeySigner, Signer};
use serde_json::{json, Value};

/// A served OpenAPI document, with its components made strict.
struct Doc {
    doc: Value,
    components: Value,
}

fn strict(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            for x in m.values_mut() {
                strict(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strict),
        _ => {}
    }
}

impl Doc {
    fn new(doc: Value) -> Doc {
        assert_eq!(
            doc["openapi"].as_str().map(|v| &v[..4]),
            Some("3.1."),
            "{doc}"
        );
        let mut components = doc["components"].clone();
        strict(&mut components);
        Doc { doc, components }
    }

    fn operation(&self, method: &str, path: &str) -> &Value {
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        op
    }

    fn validate(&self, what: &str, schema: &Value, body: &Value) {
        let mut root = schema.clone();
        strict(&mut root);
        let root = match root {
            Value::Object(mut m) => {
                m.insert("components".into(), self.components.clone());
                Value::Object(m)
            }
            other => panic!("{what}: schema is not an object: {other}"),
        };
        let v = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the answer does not match the document: {errors:#?}\nbody: {body:#}"
        );
    }

    /// `body` (JSON) is valid against the documented schema of `status`.
    fn answer(&self, method: &str, path: &str, status: u16, body: &Value) {
        let r = &self.operation(method, path)["responses"][status.to_string()];
        assert!(
            r.is_object(),
            "{method} {path}: status {status} is not documented: {body}"
        );
        let schema = &r["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} {status}: no JSON schema"
        );
        self.validate(&format!("{method} {path} {status}"), schema, body);
    }

    /// A non-JSON answer: the documented content type of `status`.
    fn content(&self, method: &str, path: &str, status: u16, content_type: &str) {
        let r = &self.operation(method, path)["responses"][status.to_string()];
        let types: Vec<&String> = r["content"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert!(
            types.iter().any(|t| t.as_str() == content_type),
            "{method} {path} {status}: answered {content_type:?}, documented {types:?}"
        );
    }

    fn request(&self, method: &str, path: &str, body: &Value) {
        let schema =
            &self.operation(method, path)["requestBody"]["content"]["application/json"]["schema"];
        self.validate(&format!("{method} {path} request"), schema, body);
    }

    /// Every documented (method, path).
    fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (p, item) in self.doc["paths"].as_object().unwrap() {
            for m in ["get", "post", "put", "delete", "patch"] {
                if item.get(m).is_some() {
                    out.push((m.to_string(), p.clone()));
                }
            }
        }
        out
    }

    fn paths(&self) -> BTreeSet<String> {
        self.doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    /// Whether the operation needs no credentials (`security: [{}]`).
    fn public(&self, method: &str, path: &str) -> bool {
        let s = &self.operation(method, path)["security"];
        s.as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
        })
    }
}

/// The paths the routers in `files` (relative to the workspace) register with
/// `.route("...")`: a route added without documentation shows up here.
fn routed(files: &[&str]) -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        for (i, _) in text.match_indices(".route(") {
            let rest = text[i + ".route(".len()..].trim_start();
            let path = rest.strip_prefix('"').and_then(|r| r.split('"').next());
            out.insert(
                path.unwrap_or_else(|| panic!("{f}: a route whose path is not a literal"))
                    .to_string(),
            );
        }
    }
    assert!(!out.is_empty(), "no routes found in {files:?}");
    out
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "no-such-agent")
        .replace("{workload}", "no-such-workload")
}

struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> Answer {
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut r = http.request(m, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    // The event stream never ends: its headers are the answer.
    let text = if content_type.starts_with("text/event-stream") {
        String::new()
    } else {
        resp.text().await.unwrap()
    };
    Answer {
        status,
        content_type,
        text,
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Every documented operation is served (not the router's fallback, not a wrong
/// method) with the access the document gives it; every other method on a
/// documented path is refused as not allowed.
async fn operations_are_served(doc: &Doc, base: &str, token: Option<&str>) {
    let http = no_redirects();
    for (m, p) in doc.operations() {
        let url = format!("{base}{}", concrete(&p));
        let body = (m != "get").then(|| b"{}".to_vec());
        let a = call(&http, &m, &url, token, body.clone()).await;
        let text = a.text.clone();
        assert!(
            a.status != 405
                && !text.contains("MethodNotAllowed")
                && !text.contains("no such endpoint"),
            "{m} {p} is documented but not served: {} {text}",
            a.status
        );
        if let Some(token) = token {
            // Without credentials: refused exactly when the document says it needs them.
            let anon = call(&http, &m, &url, None, body).await;
            assert_eq!(
                anon.status == 401,
                !doc.public(&m, &p),
                "{m} {p}: without credentials answered {} but the document says public={}",
                anon.status,
                doc.public(&m, &p)
            );
            let _ = token;
        }
        if a.content_type.starts_with("application/json") && a.status != 401 {
            doc.answer(&m, &p, a.status, &a.json());
        }
    }
    for p in doc.paths() {
        for m in ["get", "post", "delete", "put"] {
            if doc.doc["paths"][&p].get(m).is_some() {
                continue;
            }
            let a = call(
                &http,
                m,
                &format!("{base}{}", concrete(&p)),
                token,
                Some(b"{}".to_vec()),
            )
            .await;
            assert!(
                a.status == 405 || a.text.contains("MethodNotAllowed"),
                "{m} {p} is served but not documented: {} {}",
                a.status,
                a.text
            );
        }
    }
}

/// Measurements with every list (a workload, an eBPF program), so the answers carry
/// the collector lists' schemas too.
fn rich() -> evidence::Measurements {
    let hex = |b: u8| format!("sha256:{}", hex::encode([b; 32]));
    evidence::Measurements {
        workloads: Some(evidence::Workloads::full(
            vec![evidence::Workload {
                name: "web".into(),
                id: hex::encode([7; 32]),
                state: "running".into(),
                image: "registry.example/web:1".into(),
                image_id: hex(0xee),
                image_digest: Some(hex(0xdd)),
            }],
            (),
        )),
        ebpf: Some(evidence::Ebpf::full(
            vec![evidence::BpfProgram {
                id: 11,
                name: "probe".into(),
                prog_type: "kprobe".into(),
                tag: "0123456789abcdef".into(),
                sha256: evidence::report::HexBytes([5; 32]),
                pinned: vec!["/sys/fs/bpf/provenant/probe".into()],
            }],
            evidence::EbpfExtra {
                lsm_active: Some(false),
            },
        )),
        ..measurements(1, 1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_document_matches_routes_and_real_answers() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ear.key");
    let sk = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
    use p256::pkcs8::EncodePrivateKey;
    let pem = sk.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
    provenant_base::fsutil::write_private(&key, pem.as_bytes()).unwrap();
    let mut a = TestAgent::new("node-1");
    let enrolled = a.enroll();
    let cp = start_with(dir, None, |cfg| {
        cfg.enrollment.keys.push(enrolled);
        cfg.ear = Some(EarConfig {
            signing_key_file: key.clone(),
            ttl: Duration::from_secs(300),
        });
    })
    .await;
    let http = no_redirects();
    let url = |p: &str| format!("{}{p}", cp.base);

    // The document is public, and documents exactly the routes the router has.
    let served = call(&http, "get", &url("/openapi.json"), None, None).await;
    assert_eq!(served.status, 200, "{}", served.text);
    let doc = Doc::new(served.json());
    let routes = routed(&[
        "cp-verifier/src/http/router.rs",
        "cp-verifier/src/http/ear.rs",
    ]);
    assert!(routes.len() >= 20, "{routes:?}");
    assert_eq!(doc.paths(), routes, "documented paths != routed paths");
    for s in ["viewer_token", "operator_token", "operator_cert"] {
        assert!(
            doc.doc["components"]["securitySchemes"][s].is_object(),
            "{s}"
        );
    }

    // The agents' protocol: challenge, registration (request and answer), a refusal.
    let ch = call(&http, "get", &url("/api/v1/challenge"), None, None).await;
    doc.answer("get", "/api/v1/challenge", ch.status, &ch.json());
    let nonce = cp.challenge().await;
    let env = a.report(nonce, cp.now(), rich());
    let req = serde_json::to_value(RegisterRequest {
        envelope: env.clone(),
        evidence: RegisterEvidence::default(),
    })
    .unwrap();
    doc.request("post", "/api/v1/register", &req);
    let (s, v) = cp.register_env(&env).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["workloads"][0]["name"], "web", "{v}");
    a.seq = 0;
    a.head = evidence::report::HexBytes(env.digest());
    doc.answer("post", "/api/v1/register", s, &v);
    let mut stranger = TestAgent::new("node-2");
    let (s, v) = cp.register(&mut stranger, measurements(1, 1)).await;
    assert_eq!((s, kind(&v)), (403, "Unenrolled"), "{v}");
    doc.answer("post", "/api/v1/register", s, &v);
    let (s, v) = cp.post_raw("/api/v1/register", b"{not json".to_vec()).await;
    assert_eq!((s, kind(&v)), (400, "MalformedJson"), "{v}");
    doc.answer("post", "/api/v1/register", s, &v);

    // Pulses: accepted, then the same pulse again (a replay).
    cp.clock.advance(Duration::from_secs(1));
    let pulse = a.next_pulse(cp.now(), rich());
    doc.request(
        "post",
        "/api/v1/heartbeat",
        &serde_json::from_slice(&pulse.to_json()).unwrap(),
    );
    let (s, v) = cp.pulse(&pulse).await;
    assert_eq!(s, 200, "{v}");
    doc.answer("post", "/api/v1/heartbeat", s, &v);
    a.accepted(&pulse);
    let (s, v) = cp.pulse(&pulse).await;
    assert_eq!((s, kind(&v)), (409, "Replay"), "{v}");
    doc.answer("post", "/api/v1/heartbeat", s, &v);

    // The read API, with the viewer token.
    for (path, template, want) in [
        ("/api/v1/agents", "/api/v1/agents", 200),
        ("/api/v1/agents?badge=yellow&limit=1", "/api/v1/agents", 200),
        ("/api/v1/agents?badge=purple", "/api/v1/agents", 400),
        ("/api/v1/agents/node-1", "/api/v1/agents/{id}", 200),
        (
            "/api/v1/agents/node-1/workloads/web/ear?nonce=short",
            "/api/v1/agents/{id}/workloads/{workload}/ear",
            400,
        ),
        ("/api/v1/agents/nobody", "/api/v1/agents/{id}", 404),
        (
            "/api/v1/agents/node-1/history",
            "/api/v1/agents/{id}/history",
            200,
        ),
        (
            "/api/v1/agents/node-1/history?limit=x",
            "/api/v1/agents/{id}/history",
            400,
        ),
        (
            "/api/v1/agents/nobody/history",
            "/api/v1/agents/{id}/history",
            404,
        ),
        ("/api/v1/alerts", "/api/v1/alerts", 200),
        ("/api/v1/alerts?agent=node-1&limit=5", "/api/v1/alerts", 200),
        ("/api/v1/withdrawals", "/api/v1/withdrawals", 200),
        ("/healthz", "/healthz", 200),
        ("/.well-known/jwks.json", "/.well-known/jwks.json", 200),
        (
            "/api/v1/agents/node-1/ear?nonce=short",
            "/api/v1/agents/{id}/ear",
            400,
        ),
    ] {
        let r = call(&http, "get", &url(path), Some(VIEWER_TOKEN), None).await;
        assert_eq!(r.status, want, "{path}: {}", r.text);
        doc.answer("get", template, r.status, &r.json());
    }
    // The lists (hand-written schemas) were in what was checked.
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(
        v["measurements"]["workloads"]["items"][0]["name"], "web",
        "{v}"
    );
    assert_eq!(v["measurements"]["ebpf"]["lsm_active"], false, "{v}");
    let r = call(&http, "get", &url("/api/v1/agents"), None, None).await;
    assert_eq!(r.status, 401);
    doc.answer("get", "/api/v1/agents", 401, &r.json());
    for (path, template, ct) in [
        (
            "/api/v1/agents/node-1/ear",
            "/api/v1/agents/{id}/ear",
            "application/jwt",
        ),
        (
            "/metrics",
            "/metrics",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        ("/agents", "/agents", "text/html; charset=utf-8"),
        ("/api/v1/events", "/api/v1/events", "text/event-stream"),
    ] {
        let r = call(&http, "get", &url(path), Some(VIEWER_TOKEN), None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let ct_doc = ct.split(';').next().unwrap();
        let documented = if template == "/metrics" { ct } else { ct_doc };
        assert!(
            r.content_type.starts_with(ct_doc),
            "{path}: {}",
            r.content_type
        );
        doc.content("get", template, 200, documented);
    }

    // Operator writes, with the operator token.
    let op = |m: &'static str, p: &'static str, body: Value| {
        let http = http.clone();
        let u = url(p);
        async move {
            call(
                &http,
                m,
                &u,
                Some(OPERATOR_TOKEN),
                Some(serde_json::to_vec(&body).unwrap()),
            )
            .await
        }
    };
    let r = op(
        "post",
        "/api/v1/agents/node-1/expect",
        json!({"accept_current": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    doc.request(
        "post",
        "/api/v1/agents/{id}/expect",
        &json!({"accept_current": true}),
    );
    doc.answer("post", "/api/v1/agents/{id}/expect", 200, &r.json());
    let r = op("post", "/api/v1/agents/node-1/expect", json!({"bogus": 1})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    doc.answer("post", "/api/v1/agents/{id}/expect", 400, &r.json());
    for p in [
        "/api/v1/agents/node-1/disable",
        "/api/v1/agents/node-1/enable",
    ] {
        let r = op("post", p, json!({"reason": "maintenance"})).await;
        assert_eq!(r.status, 200, "{p}: {}", r.text);
        doc.answer("post", &p.replace("node-1", "{id}"), 200, &r.json());
    }
    let w = json!({"agent_binary": "ab".repeat(32), "reason": "bad build"});
    doc.request("post", "/api/v1/withdrawals", &w);
    let r = op("post", "/api/v1/withdrawals", w).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let withdrawal = r.json();
    doc.answer("post", "/api/v1/withdrawals", 200, &withdrawal);
    let id = withdrawal["id"].as_str().unwrap().to_string();
    let r = call(
        &http,
        "get",
        &url("/api/v1/withdrawals"),
        Some(VIEWER_TOKEN),
        None,
    )
    .await;
    doc.answer("get", "/api/v1/withdrawals", 200, &r.json());
    let r = call(
        &http,
        "delete",
        &url(&format!("/api/v1/withdrawals/{id}")),
        Some(OPERATOR_TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    doc.answer("delete", "/api/v1/withdrawals/{id}", 200, &r.json());
    let r = call(
        &http,
        "post",
        &url("/api/v1/agents/node-1/disable"),
        Some(VIEWER_TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    doc.answer("post", "/api/v1/agents/{id}/disable", 401, &r.json());
    let r = op(
        "delete",
        "/api/v1/agents/node-1",
        json!({"reason": "decommissioned"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    doc.answer("delete", "/api/v1/agents/{id}", 200, &r.json());

    // Every documented operation is served, with the documented access.
    operations_are_served(&doc, &cp.base, Some(OPERATOR_TOKEN)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_document_matches_routes_and_real_answers() {
    let key = KeySigner::generate_ed25519().unwrap();
    let enrolled = cp_verifier::config::EnrolledKey {
        agent_id: "node-api".into(),
        fingerprint: key.public_key().fingerprint(),
    };
    let cp = start(|c| {
        c.enrollment.keys.push(enrolled);
        c.policy.clock_unsynchronised = policy::ClockUnsynchronised::Ignore;
    })
    .await;
    // The agent signs with the control plane's clock, kept at the real time so its
    // pulses (one per 200 ms of real time) carry increasing timestamps.
    let real = || {
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        )
        .unwrap()
    };
    cp.clock.0.store(real(), Ordering::SeqCst);
    let clock = cp.clock.clone();
    tokio::spawn(async move {
        loop {
            clock.0.store(real(), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("node.key");
    provenant_base::fsutil::write_private(&key_file, key.to_pkcs8_pem().unwrap().as_bytes())
        .unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "agent_id = \"node-api\"\ncontrol_plane = \"{}\"\nheartbeat_interval = \"200ms\"\n\
             max_backoff = \"500ms\"\nkey_file = \"{}\"\nquote_provider = \"none\"\n\
             collect_ebpf = false\ncollect_workloads = false\ninsecure_http = true\n\
             gate_accepts = [\"green\", \"yellow\"]\n",
            cp.base,
            key_file.display()
        ),
    )
    .unwrap();
    let cfg = guest_agent::config::AgentConfig::load(&cfg).unwrap();
    let quote = guest_agent::quote::select(&cfg).unwrap();
    let agent = Arc::new(
        guest_agent::agent::Agent::new(cfg, Some(Arc::new(key)), quote, cp.clock.clone()).unwrap(),
    );
    let app = guest_agent::api::router(agent.state(), agent.clock());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let http = no_redirects();
    let url = |p: &str| format!("{base}{p}");

    let served = call(&http, "get", &url("/openapi.json"), None, None).await;
    assert_eq!(served.status, 200, "{}", served.text);
    let doc = Doc::new(served.json());
    assert_eq!(
        doc.paths(),
        routed(&["guest-agent/src/api.rs"]),
        "documented != routed"
    );

    // Before the agent registers: no verdict, the gate closed.
    for p in ["/health", "/api/v1/status", "/api/v1/verify"] {
        let r = call(&http, "get", &url(p), None, None).await;
        doc.answer("get", p, r.status, &r.json());
    }
    let r = call(&http, "get", &url("/api/v1/verify"), None, None).await;
    assert_eq!(r.status, 503, "{}", r.text);

    tokio::spawn(agent.run());
    // Registered and pulsing.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(&http, "get", &url("/api/v1/status"), None, None).await;
        let v = r.json();
        if v["phase"] == "pulsing" && v["last_pulse"].is_object() {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the agent does not pulse: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in ["/health", "/api/v1/status", "/api/v1/verify"] {
        let r = call(&http, "get", &url(p), None, None).await;
        doc.answer("get", p, r.status, &r.json());
    }
    // The software tier is yellow, which this gate accepts: open.
    let r = call(&http, "get", &url("/api/v1/verify"), None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(&http, "get", &url("/metrics"), None, None).await;
    assert_eq!(r.status, 200);
    doc.content("get", "/metrics", 200, &r.content_type);
    operations_are_served(&doc, &base, None).await;
}

/// The check above must be able to fail: a schema that no longer matches what the
/// server sends, or an answer with a field the document does not name, is caught.
#[test]
fn a_wrong_schema_or_an_undocumented_field_fails() {
    use utoipa::ToSchema;
    let mut deps = Vec::new();
    evidence::api::Challenge::schemas(&mut deps);
    let components = serde_json::to_value(
        utoipa::openapi::ComponentsBuilder::new()
            .schema_from::<evidence::api::Challenge>()
            .schemas_from_iter(deps)
            .build(),
    )
    .unwrap();
    let doc = json!({
        "openapi": "3.1.0",
        "paths": {"/x": {"get": {"responses": {"200": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Challenge"}}}}}}}},
        "components": components,
    });
    let doc = Doc::new(doc);
    let good = json!({"nonce": "ab".repeat(32), "expires_at_ns": 1});
    doc.answer("get", "/x", 200, &good);
    for bad in [
        json!({"nonce": "ab".repeat(31), "expires_at_ns": 1}),
        json!({"nonce": "AB".repeat(32), "expires_at_ns": 1}),
        json!({"nonce": "ab".repeat(32)}),
        json!({"nonce": "ab".repeat(32), "expires_at_ns": -1}),
        json!({"nonce": "ab".repeat(32), "expires_at_ns": 1, "extra": true}),
    ] {
        let r = std::panic::catch_unwind(|| doc.answer("get", "/x", 200, &bad));
        assert!(r.is_err(), "accepted {bad}");
    }
}
