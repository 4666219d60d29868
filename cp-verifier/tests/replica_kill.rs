//! Two `cp-verifier serve` processes on one PostgreSQL database, 200 agents split
//! between them, and the replica that started first (the fleet leader) SIGKILLed
//! while pulses flow. The agents' client (`cp_verifier::loadgen`, as `cp-verifier
//! loadgen` uses it) resends a pulse whose answer it lost to the other replica.
//!
//! Then: no pulse is lost (every agent's chain is whole in the store), none is
//! accepted twice (a resend of an already-committed pulse is refused as a replay),
//! and when the agents fall silent `Blinded` is raised exactly once per agent, by the
//! surviving replica, and still once after the killed one comes back.
//!
//! Real processes, real PostgreSQL (`harness/pg.rs`), real HTTP on loopback.

#![allow(clippy::as_conversions)] // small test constants

mod harness;
use harness::pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cp_verifier::loadgen::{self, LoadAgent};
use provenant_base::clock::{Clock, SystemClock};
use sqlx::Connection;

const AGENTS: usize = 200;
const PULSES: usize = 30;

struct Replica {
    child: Child,
    port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(config: &Path, port: u16, log: &Path) -> Replica {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cp-verifier"))
            .args(["serve", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start cp-verifier serve");
        Replica {
            child,
            port,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "replica exited ({s}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(r) = http.get(format!("{}/healthz", self.url())).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("replica on port {} did not answer in 60 s", self.port);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, name: &str, port: u16, store: &str, enrollment: &str) -> PathBuf {
    let data = dir.join(format!("data-{name}"));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
store = "{store}"
heartbeat_interval = "3s"
sweep_interval = "200ms"
alert_cooldown = "0s"
max_clock_skew = "10m"

[policy]
allow_software_tier = true
missed_heartbeats = 2

[limits]
challenge_rate = 100000.0
challenge_burst = 100000
register_rate = 100000.0
register_burst = 100000

{enrollment}"#,
            data = data.display(),
        ),
    )
    .unwrap();
    path
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
    c.close().await.unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_loses_nothing_acknowledged_and_blinded_is_raised_once() {
    let db = pg::shared().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = LoadAgent::fleet("replica-kill", "node", AGENTS).unwrap();
    for a in &mut fleet {
        a.interval_ms = 3000;
    }
    let enrollment = loadgen::enrollment_toml(&fleet);
    let (pa, pb) = (free_port(), free_port());
    let ca = write_config(dir.path(), "a", pa, &db, &enrollment);
    let cb = write_config(dir.path(), "b", pb, &db, &enrollment);
    // A first, so that A holds the leader lock when it is killed.
    let mut a = Replica::spawn(&ca, pa, &dir.path().join("a.log"));
    a.wait_ready().await;
    let mut b = Replica::spawn(&cb, pb, &dir.path().join("b.log"));
    b.wait_ready().await;
    let targets = vec![a.url(), b.url()];

    let client = loadgen::client(AGENTS, None).unwrap();
    let now = SystemClock.now().get();
    let mut chains = Vec::with_capacity(AGENTS);
    for (i, agent) in fleet.iter().enumerate() {
        let head = agent.register(&client, &targets[i % 2], now).await.unwrap();
        chains.push(agent.chain(head, PULSES, now).unwrap());
    }

    // Kill A while the pulses flow (the run takes several seconds at debug speed).
    let a_pid = a.child.id();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let ok = Command::new("kill")
            .args(["-9", &a_pid.to_string()])
            .status()
            .unwrap()
            .success();
        (ok, Instant::now())
    });
    let report = loadgen::fire(
        &client,
        &targets,
        "/api/v1/heartbeat",
        chains,
        Duration::from_secs(240),
    )
    .await;
    let end_ns = SystemClock.now().get();
    let (killed, _) = killer.await.unwrap();
    assert!(killed, "kill -9 of replica A failed");
    assert!(
        a.child.try_wait().unwrap().is_some(),
        "replica A still runs"
    );
    eprintln!("{}", serde_json::to_string(&report).unwrap());

    let planned = (AGENTS * PULSES) as u64;
    assert!(
        report.transport_errors > 0,
        "the kill did not land mid-run (no transport error): make the run longer: {report:?}"
    );
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.not_sent, 0, "{report:?}");
    assert!(report.refused.is_empty(), "refusals: {:?}", report.refused);
    assert_eq!(
        report.accepted + report.replay_after_lost_answer,
        planned,
        "{report:?}"
    );
    assert!(
        report.replay_after_lost_answer <= report.transport_errors,
        "{report:?}"
    );
    // Nothing acknowledged is lost: every chain is whole in the store, and no pulse
    // counted twice (a chain cannot be longer than what was sent).
    let whole = count(
        &db,
        &format!("SELECT count(*) FROM agents WHERE sequence = {PULSES}"),
    )
    .await;
    assert_eq!(whole, AGENTS as i64, "agents whose chain is whole");
    assert_eq!(
        count(&db, "SELECT count(*) FROM agents").await,
        AGENTS as i64
    );

    // Silence: B, now the only replica, must take over the sweep and blind each
    // agent once (3 s interval, 2 missed). (An agent the loaded control plane could
    // not answer for 6 s during the run was rightly blinded and recovered then: only
    // the alerts for the silence after the run count.)
    let blinded =
        format!("SELECT count(*) FROM alerts WHERE kind = 'Blinded' AND at_ns >= {end_ns}");
    let blinded = blinded.as_str();
    let t0 = Instant::now();
    while count(&db, blinded).await < AGENTS as i64 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "only {} of {AGENTS} agents blinded after 60 s; B's log:\n{}",
            count(&db, blinded).await,
            std::fs::read_to_string(&b.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A comes back and joins; both sweep for a while more.
    let mut a2 = Replica::spawn(&a.config, a.port, &dir.path().join("a2.log"));
    a2.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let twice = count(
        &db,
        &format!(
            "SELECT count(*) FROM (SELECT agent_id FROM alerts WHERE kind = 'Blinded' \
             AND at_ns >= {end_ns} GROUP BY agent_id HAVING count(*) > 1) AS t"
        ),
    )
    .await;
    let total = count(&db, blinded).await;
    if twice != 0 || total != AGENTS as i64 {
        panic!(
            "Blinded raised {total} times for {AGENTS} agents, {twice} agents more than once:\n{}\n\
             logs (warnings and errors):\n{}",
            blinded_twice(&db).await,
            [&a.log, &b.log, &a2.log]
                .iter()
                .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .flat_map(|t| {
                    t.lines()
                        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                        .take(20)
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    drop((a2, b));
}

/// The Blinded alerts of agents blinded more than once, for the failure message.
async fn blinded_twice(url: &str) -> String {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT agent_id, at_ns, detail FROM alerts WHERE kind = 'Blinded' AND agent_id IN \
         (SELECT agent_id FROM alerts WHERE kind = 'Blinded' GROUP BY agent_id \
          HAVING count(*) > 1) ORDER BY agent_id, at_ns LIMIT 12",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    rows.iter()
        .map(|(a, t, d)| format!("{a} at {t}: {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}
