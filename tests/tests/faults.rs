//! Faults, with real processes: a control plane SIGKILLed while 50 agents pulse, and a
//! control plane whose store's filesystem is full. The agents are simulated in the
//! test process (real keys; reports and pulses signed with the agent's own code) and
//! behave as `guest-agent` does (see `guest-agent/src/agent.rs`): a pulse without an
//! answer makes the agent register again (fresh challenge, a report naming its last
//! ACKNOWLEDGED pulse), so an honest agent never resends a pulse the control plane may
//! already hold, nor forks its chain; a `StoreUnavailable` answer (nothing was
//! recorded) keeps the chain where it was and the next pulse continues it.
//!
//! Run with `--nocapture` to see the figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evidence::report::HexBytes;
use evidence::{Digest32, Envelope};
use provenant_tests::fleet::{Answer, CpClient, CpProcess, CpSpec, RealAgent, SimAgent, SmallFs};
use serde_json::Value;

/// One simulated agent's view of the run.
struct AgentLog {
    agent: SimAgent,
    /// The state-changing request on the wire now: (sequence, digest) it would store.
    in_flight: Option<(u64, Digest32)>,
    /// Sent since the last acknowledgement without an answer (the control plane may
    /// or may not have stored them).
    unanswered_since_ack: Vec<(u64, Digest32)>,
    /// Every pulse acknowledged with a 200, and every pulse that got no answer.
    acked_pulses: Vec<Envelope>,
    unanswered_pulses: Vec<Envelope>,
    registrations: u32,
    /// Answers other than 200 to registrations and pulses (an honest agent gets none).
    refusals: Vec<String>,
}

struct Run {
    stop: AtomicBool,
    acked: AtomicU64,
}

/// The agent's loop: register (backing off as `guest-agent` does), then pulse back to
/// back until refused or unanswered, then register again.
async fn agent_loop(log: Arc<Mutex<AgentLog>>, cp: CpClient, run: Arc<Run>) {
    let mut failures = 0u32;
    let cap = Duration::from_secs(1);
    while !run.stop.load(Ordering::SeqCst) {
        // Registration.
        let nonce = match cp.challenge().await {
            Ok(n) => n,
            Err(a) => {
                if let Answer::Status(s, v) = &a {
                    log.lock()
                        .unwrap()
                        .refusals
                        .push(format!("challenge: {s} {v}"));
                }
                failures += 1;
                tokio::time::sleep(guest_agent::agent::backoff(failures, cap)).await;
                continue;
            }
        };
        let report = {
            let mut l = log.lock().unwrap();
            let r = l.agent.report(nonce);
            l.in_flight = Some((0, HexBytes(r.digest())));
            r
        };
        let a = cp.register(&report).await;
        {
            let mut l = log.lock().unwrap();
            let sent = l.in_flight.take();
            match &a {
                Answer::Status(200, _) => {
                    l.agent.registered(&report);
                    l.unanswered_since_ack.clear();
                    l.registrations += 1;
                }
                Answer::Status(s, v) => l.refusals.push(format!("register: {s} {v}")),
                Answer::NoAnswer(_) => l.unanswered_since_ack.extend(sent),
            }
        }
        if a.status() != Some(200) {
            failures += 1;
            tokio::time::sleep(guest_agent::agent::backoff(failures, cap)).await;
            continue;
        }
        failures = 0;
        // Pulses, each after the last acknowledged one.
        while !run.stop.load(Ordering::SeqCst) {
            let pulse = {
                let mut l = log.lock().unwrap();
                let p = l.agent.next_pulse();
                l.in_flight = Some((l.agent.seq + 1, HexBytes(p.digest())));
                p
            };
            let a = cp.heartbeat(&pulse).await;
            let mut l = log.lock().unwrap();
            let sent = l.in_flight.take();
            match a {
                Answer::Status(200, _) => {
                    l.agent.acknowledged(&pulse);
                    l.unanswered_since_ack.clear();
                    l.acked_pulses.push(pulse);
                    run.acked.fetch_add(1, Ordering::SeqCst);
                }
                Answer::Status(s, v) => {
                    let next = l.agent.seq + 1;
                    l.refusals.push(format!("pulse {next}: {s} {v}"));
                    break;
                }
                Answer::NoAnswer(_) => {
                    l.unanswered_since_ack.extend(sent);
                    l.unanswered_pulses.push(pulse);
                    break;
                }
            }
        }
    }
}

async fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each agent's (sequence, chain head) as the store on disk holds it, read with the
/// control plane's own store code while no control plane runs. On a runtime of its
/// own, so that every connection it opened is closed when it returns.
fn stored_chains(data_dir: &std::path::Path) -> HashMap<String, (u64, Digest32)> {
    use cp_verifier::store::Store;
    let dir = data_dir.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let store = cp_verifier::store::sqlite::SqliteStore::open(&dir)
                .await
                .expect("open the store the killed control plane left");
            let agents = store.list_agents().await.expect("read the agents");
            agents
                .into_iter()
                .map(|r| (r.agent_id, (r.sequence, r.chain_head)))
                .collect()
        })
    })
    .join()
    .expect("store reader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_kill9_cp_loses_no_acknowledged_pulse() {
    const AGENTS: usize = 50;
    const KILL_AFTER: u64 = 500;
    const MAX_PULSES: u64 = 1500;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let agents: Vec<SimAgent> = (0..AGENTS)
        .map(|i| SimAgent::new(&format!("fleet-{i:02}"), 1000))
        .collect();
    let mut spec = CpSpec::new(&root.join("cp-data"), &root.join("audit.jsonl"));
    spec.enrolled = agents.iter().map(SimAgent::enrollment).collect();
    // One Replay alert per agent for the re-posts at the end, not one per pulse.
    spec.alert_cooldown = "60s";
    let mut cp = CpProcess::start(&spec, &root.join("cp.toml"), root).await;
    let client = cp.client.clone();

    let run = Arc::new(Run {
        stop: AtomicBool::new(false),
        acked: AtomicU64::new(0),
    });
    let logs: Vec<Arc<Mutex<AgentLog>>> = agents
        .into_iter()
        .map(|agent| {
            Arc::new(Mutex::new(AgentLog {
                agent,
                in_flight: None,
                unanswered_since_ack: Vec::new(),
                acked_pulses: Vec::new(),
                unanswered_pulses: Vec::new(),
                registrations: 0,
                refusals: Vec::new(),
            }))
        })
        .collect();
    let t0 = Instant::now();
    let tasks: Vec<_> = logs
        .iter()
        .map(|l| tokio::spawn(agent_loop(l.clone(), client.clone(), run.clone())))
        .collect();

    // Phase 1: every agent registered and pulsing, then kill -9 in the middle.
    wait_until(30, "every agent registered", || {
        logs.iter().all(|l| l.lock().unwrap().registrations >= 1)
    })
    .await;
    wait_until(30, "pulses acknowledged before the kill", || {
        run.acked.load(Ordering::SeqCst) >= KILL_AFTER
    })
    .await;
    cp.kill9();
    let killed = Instant::now();
    let acked_at_kill = run.acked.load(Ordering::SeqCst);

    // What every agent knows now (no control plane runs, so nothing more can be
    // acknowledged), against what the store on disk holds.
    let stored = stored_chains(&spec.data_dir);
    let mut in_flight = 0;
    let mut answer_lost = 0;
    let mut stored_total = 0;
    let mut acked_seq_total = 0;
    for l in &logs {
        let l = l.lock().unwrap();
        let a = &l.agent;
        let candidates: Vec<(u64, Digest32)> = l
            .unanswered_since_ack
            .iter()
            .copied()
            .chain(l.in_flight)
            .collect();
        if !candidates.is_empty() {
            in_flight += 1;
        }
        let got = stored
            .get(&a.id)
            .unwrap_or_else(|| panic!("{} is not in the store", a.id));
        stored_total += got.0;
        acked_seq_total += a.seq;
        if *got == (a.seq, a.head) {
            continue;
        }
        assert!(
            candidates.contains(got),
            "{}: the store holds sequence {} ({}), but the last acknowledged is {} ({}) and the \
             unanswered ones are {candidates:?}: an acknowledged pulse was lost or an unsent one stored",
            a.id,
            got.0,
            got.1,
            a.seq,
            a.head
        );
        assert_eq!(
            got.0,
            a.seq + 1,
            "{}: more than one pulse past the last acknowledged",
            a.id
        );
        answer_lost += 1;
    }

    // Restart on the same data directory and port.
    let restart = cp.restart().await;
    let downtime = killed.elapsed();

    // Phase 2: every agent registers again and pulses on, to the bound.
    let again = Instant::now() + Duration::from_secs(30);
    loop {
        let behind: Vec<String> = logs
            .iter()
            .filter_map(|l| {
                let l = l.lock().unwrap();
                (l.registrations < 2).then(|| format!("{}: {:?}", l.agent.id, l.refusals))
            })
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < again,
            "agents not registered again 30 s after the restart: {behind:?}\n{}",
            cp.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = t0 + Duration::from_secs(20);
    while run.acked.load(Ordering::SeqCst) < MAX_PULSES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .expect("agent stops")
            .expect("agent task");
    }
    let acked_total = run.acked.load(Ordering::SeqCst);
    // The agents are done: their logs are the test's alone now.
    let mut logs: Vec<AgentLog> = logs
        .into_iter()
        .map(|l| {
            Arc::try_unwrap(l)
                .ok()
                .expect("agent task finished")
                .into_inner()
                .unwrap()
        })
        .collect();
    assert!(cp.is_running(), "control plane died:\n{}", cp.log_text());

    // No honest agent was ever refused, none is blinded, none flagged as a replay.
    for l in &logs {
        assert!(
            l.refusals.is_empty(),
            "{} was refused: {:?}",
            l.agent.id,
            l.refusals
        );
        assert!(l.unanswered_since_ack.is_empty() && l.in_flight.is_none());
        let v = client
            .agent(&l.agent.id)
            .await
            .unwrap_or_else(|| panic!("{} is listed", l.agent.id));
        assert_eq!(
            v["sequence"].as_u64(),
            Some(l.agent.seq),
            "{}: stored sequence is not the last acknowledged",
            l.agent.id
        );
        assert_ne!(v["state"], "blinded", "{} is blinded", l.agent.id);
        assert_eq!(v["blinded"], false, "{}", l.agent.id);
    }
    let alerts = client.alerts().await;
    let count = |k: &str| alerts.iter().filter(|a| a["kind"] == k).count();
    assert_eq!(count("Blinded"), 0, "an agent was blinded: {alerts:?}");
    assert_eq!(
        count("Replay"),
        0,
        "an honest agent's retry was taken for a replay"
    );
    let registrations: u32 = logs.iter().map(|l| l.registrations).sum();
    assert_eq!(count("Registered"), usize::try_from(registrations).unwrap());

    // Each agent's chain head is the last acknowledged pulse: the next pulse after it
    // is accepted.
    let mut next_ok = 0;
    for l in &mut logs {
        let p = l.agent.next_pulse();
        let a = client.heartbeat(&p).await;
        assert_eq!(a.status(), Some(200), "{}: {a:?}", l.agent.id);
        l.agent.acknowledged(&p);
        l.acked_pulses.push(p);
        next_ok += 1;
    }

    // None is accepted twice: every pulse that got a 200, and every one that got no
    // answer, posted again, is refused with a typed reason.
    let reposts: Vec<_> = logs
        .iter()
        .map(|l| {
            let all: Vec<Envelope> = l
                .acked_pulses
                .iter()
                .chain(&l.unanswered_pulses)
                .cloned()
                .collect();
            let c = client.clone();
            tokio::spawn(async move {
                let mut statuses: HashMap<(u16, String), u64> = HashMap::new();
                for p in all {
                    let a = c.heartbeat(&p).await;
                    let s = a.status().expect("the control plane answers");
                    assert!(
                        s != 200 && s < 500,
                        "a pulse posted again got {s}: {:?}",
                        a.body()
                    );
                    let kind = a.kind().expect("a typed refusal").to_string();
                    *statuses.entry((s, kind)).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let mut refused: HashMap<(u16, String), u64> = HashMap::new();
    for r in reposts {
        for (k, n) in r.await.expect("re-post task") {
            *refused.entry(k).or_default() += n;
        }
    }
    let reposted: u64 = refused.values().sum();
    let unanswered: usize = logs.iter().map(|l| l.unanswered_pulses.len()).sum();
    assert_eq!(
        reposted,
        acked_total + next_ok + u64::try_from(unanswered).unwrap()
    );
    assert!(
        !cp.all_logs().contains("panicked"),
        "the control plane panicked"
    );

    println!(
        "kill -9 figures: {AGENTS} agents; {acked_at_kill} pulses acknowledged before the kill \
         (sum of acknowledged sequences {acked_seq_total}), {stored_total} stored after it; \
         {in_flight} agents had a pulse in flight at the kill, {answer_lost} of them stored with \
         the answer lost; restart took {restart:?} (down {downtime:?}); {acked_total} pulses \
         acknowledged in {:?} overall; {reposted} re-posted pulses all refused: {refused:?}",
        t0.elapsed()
    );
}

/// A webhook receiver on 127.0.0.1 recording every alert it is sent.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, received)
}

/// Sends each agent's next pulse; every answer must be a 200 or a typed 503
/// `StoreUnavailable`. Returns how many were 503.
async fn pulse_round(cp: &CpClient, agents: &mut [SimAgent]) -> usize {
    let mut refused = 0;
    for a in agents.iter_mut() {
        let p = a.next_pulse();
        match cp.heartbeat(&p).await {
            Answer::Status(200, _) => a.acknowledged(&p),
            Answer::Status(503, v) => {
                assert_eq!(
                    v["error"]["kind"], "StoreUnavailable",
                    "{}: a 503 without its typed reason: {v}",
                    a.id
                );
                refused += 1;
            }
            other => panic!(
                "{}: a pulse into a full store got {other:?}; its last acknowledged (200) sequence is {}",
                a.id, a.seq
            ),
        }
    }
    refused
}

fn alerts_of<'a>(v: &'a [Value], kind: &str, agent: &str) -> Vec<&'a Value> {
    v.iter()
        .filter(|a| a["kind"] == kind && a["agent_id"] == agent)
        .collect()
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_disk_full_store_gets_typed_503() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Declared before the control plane: unmounted after it is killed.
    let small = SmallFs::mount(&root.join("small"), 2048);
    let (hook_url, received) = webhook().await;
    let audit = root.join("audit.jsonl");
    let mut agents: Vec<SimAgent> = (0..4)
        .map(|i| SimAgent::new(&format!("disk-{i}"), 1000))
        .collect();
    let mut silent = SimAgent::new("disk-silent", 1000);
    let mut spec = CpSpec::new(&small.dir.join("cp-data"), &audit);
    // And a real agent process, to show what `guest-agent` does when the store is full.
    let real = RealAgent::setup(&root.join("disk-real"), "disk-real", &spec.base_url(), "1s");
    spec.webhooks = vec![hook_url];
    spec.enrolled = agents
        .iter()
        .chain([&silent])
        .map(SimAgent::enrollment)
        .chain([real.enrollment()])
        .collect();
    let mut cp = CpProcess::start(&spec, &root.join("cp.toml"), root).await;
    let c = cp.client.clone();
    let _real_proc = real.start();
    provenant_tests::wait_for(20, "the real agent pulsing", || async {
        let v = c.agent(&real.id).await?;
        (v["sequence"].as_u64()? >= 2).then_some(())
    })
    .await;

    // Registered and pulsing while there is room.
    for a in agents.iter_mut().chain([&mut silent]) {
        a.register(&c).await.expect("registration");
    }
    for _ in 0..3 {
        assert_eq!(pulse_round(&c, &mut agents).await, 0);
        assert_eq!(pulse_round(&c, std::slice::from_mut(&mut silent)).await, 0);
    }

    // Fill the filesystem, then pulse until the store refuses every pulse (filling
    // again whatever the database gives back).
    let filled = small.fill("filler");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let refused = pulse_round(&c, &mut agents).await
            + pulse_round(&c, std::slice::from_mut(&mut silent)).await;
        if refused == agents.len() + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store kept accepting pulses on a full filesystem ({} bytes free)",
            small.free_bytes()
        );
        small.fill("filler");
    }
    let full_at = Instant::now();
    let real_before = c.agent(&real.id).await.expect("real agent")["sequence"]
        .as_u64()
        .unwrap();
    let before: Vec<(String, u64)> = agents
        .iter()
        .chain([&silent])
        .map(|a| (a.id.clone(), a.seq))
        .collect();
    println!(
        "disk full ({}): filler {filled} bytes, {} bytes free; every pulse refused after {rounds} rounds",
        small.kind,
        small.free_bytes()
    );

    // The store is full: a challenge (which writes) gets the typed 503 too, and reads
    // still answer.
    let ch = c.get("/api/v1/challenge").await;
    assert_eq!(ch.status(), Some(503), "{ch:?}");
    assert_eq!(ch.kind(), Some("StoreUnavailable"));
    for (id, seq) in &before {
        let v = c
            .agent(id)
            .await
            .expect("reads answer while the disk is full");
        assert_eq!(v["sequence"].as_u64(), Some(*seq), "{id}");
    }

    // The silent agent stops; the others keep pulsing into the full store, never
    // getting a 200. The silent agent's Blinded reaches the audit log (another
    // filesystem) and the webhook although the store cannot take it; the pulsing
    // agents are not called silent.
    let audit_has = |kind: &str, agent: &str| {
        audit_lines(&audit)
            .into_iter()
            .find(|a| a["kind"] == kind && a["agent_id"] == agent)
    };
    let blinded_deadline = Instant::now() + Duration::from_secs(15);
    let (hooked, audited) = loop {
        assert_eq!(pulse_round(&c, &mut agents).await, agents.len());
        let hooked = alerts_of(&received.lock().unwrap(), "Blinded", "disk-silent")
            .first()
            .map(|v| (*v).clone());
        if let (Some(h), Some(a)) = (hooked, audit_has("Blinded", "disk-silent")) {
            break (h, a);
        }
        assert!(
            Instant::now() < blinded_deadline,
            "the silent agent's Blinded alert did not reach the webhook and the audit log \
             while the store was full (webhook got {:?})",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(hooked["id"], audited["id"], "one alert, one id");
    // The real agent's pulses are refused for the store, and it keeps pulsing.
    let http = provenant_tests::Http::new();
    let err = provenant_tests::wait_for(10, "the real agent told StoreUnavailable", || async {
        let (_, h) = http.get(&format!("{}/health", real.api)).await?;
        let e = h["last_error"].as_str()?.to_string();
        e.contains("StoreUnavailable").then_some(e)
    })
    .await;
    assert!(err.contains("503"), "{err}");
    // Long enough past the silence window for a wrongly blinded active agent to show.
    while full_at.elapsed() < Duration::from_secs(5) {
        assert_eq!(pulse_round(&c, &mut agents).await, agents.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(cp.is_running(), "the control plane died on a full disk");
    for id in agents.iter().map(|a| &a.id).chain([&real.id]) {
        assert!(
            audit_has("Blinded", id).is_none(),
            "{id} pulsed into the full store and was called silent"
        );
    }
    let hooks_while_full = received.lock().unwrap().len();

    // Free the space: nothing written before is lost, and pulsing resumes on the
    // same chains (so no refused pulse was recorded).
    std::fs::remove_file(small.dir.join("filler")).unwrap();
    for (id, seq) in &before {
        let v = c.agent(id).await.expect("agent still there");
        assert_eq!(v["sequence"].as_u64(), Some(*seq), "{id} lost state");
    }
    for _ in 0..3 {
        assert_eq!(pulse_round(&c, &mut agents).await, 0, "pulses resume");
    }
    // The sweeper now stores the Blinded it announced, under the same id, without
    // announcing it again; the silent agent comes back.
    let stored = provenant_tests::wait_for(10, "the announced Blinded stored", || async {
        let v = c.alerts().await;
        alerts_of(&v, "Blinded", "disk-silent")
            .first()
            .map(|a| (*a).clone())
    })
    .await;
    assert_eq!(stored["id"], hooked["id"], "stored under the announced id");
    assert_eq!(
        c.agent("disk-silent").await.unwrap()["state"],
        "blinded",
        "the silent agent is blinded in the store"
    );
    assert_eq!(pulse_round(&c, std::slice::from_mut(&mut silent)).await, 0);
    provenant_tests::wait_for(10, "Recovered reaches the webhook", || async {
        let r = received.lock().unwrap();
        (!alerts_of(&r, "Recovered", "disk-silent").is_empty()).then_some(())
    })
    .await;
    let r = received.lock().unwrap().clone();
    // Webhook delivery is at-least-once: the alert announced while the store was full
    // may come again from the durable lane once stored, but always under its one id,
    // so a receiver that deduplicates by id sees it once.
    let blinded_ids: std::collections::BTreeSet<String> = alerts_of(&r, "Blinded", "disk-silent")
        .iter()
        .filter_map(|a| a["id"].as_str().map(String::from))
        .collect();
    assert_eq!(
        blinded_ids.len(),
        1,
        "Blinded announced under one id: {r:?}"
    );
    for a in &agents {
        assert!(alerts_of(&r, "Blinded", &a.id).is_empty(), "{}", a.id);
        let v = c.agent(&a.id).await.unwrap();
        assert_eq!(v["sequence"].as_u64(), Some(a.seq));
    }
    // The real agent pulses on along the same chain: nothing lost, no new registration.
    provenant_tests::wait_for(15, "the real agent's pulses recorded again", || async {
        let v = c.agent(&real.id).await?;
        (v["sequence"].as_u64()? >= real_before + 2).then_some(())
    })
    .await;
    let alerts = c.alerts().await;
    assert_eq!(
        alerts_of(&alerts, "Registered", &real.id).len(),
        1,
        "the real agent registered again"
    );
    assert!(alerts_of(&alerts, "Blinded", &real.id).is_empty());
    assert!(cp.is_running());
    assert!(
        !cp.all_logs().contains("panicked"),
        "the control plane panicked"
    );
    println!(
        "disk full figures: {} webhook alerts while full, {} after; pulses resumed at {:?}",
        hooks_while_full,
        r.len(),
        agents.iter().map(|a| a.seq).collect::<Vec<_>>()
    );
    drop(cp);
    drop(small);
}

/// A flood of unenrolled registrations, each with a fresh key and a new agent id
/// (10,000, bounded by a deadline too), against a real control plane: every one is
/// refused with its typed reason, the alert rows, audit lines and webhook POSTs they
/// cause stay bounded (one per source and window), and a real agent going silent in
/// the middle of it still reaches the webhook as `Blinded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_unenrolled_flood_stays_bounded() {
    const FLOOD: u64 = 10_000;
    const WORKERS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (hook_url, received) = webhook().await;
    let audit = root.join("audit.jsonl");
    let mut honest = SimAgent::new("flood-honest", 1000);
    let mut spec = CpSpec::new(&root.join("cp-data"), &audit);
    spec.webhooks = vec![hook_url];
    // One alert per source per minute: the whole flood is one window.
    spec.alert_cooldown = "60s";
    spec.enrolled = vec![honest.enrollment()];
    let cp = CpProcess::start(&spec, &root.join("cp.toml"), root).await;
    let c = cp.client.clone();
    honest
        .register(&c)
        .await
        .expect("the enrolled agent registers");
    for _ in 0..2 {
        assert_eq!(pulse_round(&c, std::slice::from_mut(&mut honest)).await, 0);
    }
    // From here on the honest agent is silent: Blinded after 3 x 1 s.

    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(120);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (c, next) = (c.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut refused: HashMap<String, u64> = HashMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= FLOOD || Instant::now() >= deadline {
                    return refused;
                }
                let mut a = SimAgent::new(&format!("flood-{i:05}"), 1000);
                let kind = match a.register(&c).await {
                    Ok(_) => "Accepted".to_string(),
                    Err(Answer::Status(s, v)) => format!("{s} {}", v["error"]["kind"]),
                    Err(other) => format!("{other:?}"),
                };
                *refused.entry(kind).or_default() += 1;
            }
        }));
    }
    let mut outcomes: HashMap<String, u64> = HashMap::new();
    for w in workers {
        for (k, n) in w.await.unwrap() {
            *outcomes.entry(k).or_default() += n;
        }
    }
    let took = t0.elapsed();
    let sent: u64 = outcomes.values().sum();
    assert_eq!(
        outcomes.get("403 \"Unenrolled\"").copied(),
        Some(sent),
        "every flooded registration is refused Unenrolled: {outcomes:?}"
    );
    assert!(sent == FLOOD || Instant::now() >= deadline, "{sent} sent");

    // The honest agent's Blinded reaches the webhook despite the flood.
    provenant_tests::wait_for(20, "Blinded of the honest agent at the webhook", || async {
        let r = received.lock().unwrap();
        (!alerts_of(&r, "Blinded", "flood-honest").is_empty()).then_some(())
    })
    .await;
    let stored = c.alerts().await;
    let rows = stored.iter().filter(|a| a["kind"] == "Unenrolled").count();
    let hooks = received
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "Unenrolled")
        .count();
    let audited = audit_lines(&audit)
        .iter()
        .filter(|a| a["kind"] == "Unenrolled")
        .count();
    println!(
        "unenrolled flood: {sent} registrations in {took:?} ({:.0}/s), refused {outcomes:?}; \
         Unenrolled alert rows {rows}, webhook POSTs {hooks}, audit lines {audited}",
        f64::from(u32::try_from(sent).unwrap_or(u32::MAX)) / took.as_secs_f64()
    );
    assert!(rows <= 2, "{rows} Unenrolled alert rows for one source");
    assert!(
        hooks <= 2,
        "{hooks} Unenrolled webhook POSTs for one source"
    );
    assert!(
        audited <= 2,
        "{audited} Unenrolled audit lines for one source"
    );
    assert!(
        stored.len() < 20,
        "alert rows stay bounded: {}",
        stored.len()
    );
    drop(cp);
}
