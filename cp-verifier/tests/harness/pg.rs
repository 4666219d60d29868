//! A throwaway PostgreSQL cluster for the tests: `initdb` in a temporary directory,
//! `postgres` on 127.0.0.1 at a free port, fsync off. As root, the server runs as
//! the `postgres` OS user (PostgreSQL refuses to run as root).
//!
//! The server is started under a small shell watchdog that reads its stdin: when the
//! test process ends (even without running destructors, as with statics) the pipe
//! closes and the watchdog stops the server and removes its directory. Dropping a
//! [`PgCluster`] does the same, and waits.
//!
//! There is no skipping: without PostgreSQL the tests fail, saying what to install.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running throwaway cluster.
pub(crate) struct PgCluster {
    pub(crate) port: u16,
    dir: PathBuf,
    watchdog: Mutex<Option<Child>>,
}

/// The PostgreSQL server binaries: `$PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout).
fn pg_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("PG_BIN") {
        return PathBuf::from(b);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, b)) => b,
        None => panic!(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, PG_BIN unset): \
             install the Debian package `postgresql` (these tests do not skip)"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args...`, as the `postgres` user when we are root.
fn as_pg_user(program: &std::path::Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        // Somewhere the postgres user may enter.
        c.current_dir("/");
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

static DB_SEQ: AtomicU64 = AtomicU64::new(0);

impl PgCluster {
    /// Initialises and starts a cluster (fsync off: tests need no durability);
    /// panics (failing the test) if it cannot.
    pub(crate) fn start() -> PgCluster {
        PgCluster::start_with(false)
    }

    /// A cluster that commits as a production one does (fsync, synchronous commit,
    /// full page writes), for benchmarks.
    pub(crate) fn start_durable() -> PgCluster {
        PgCluster::start_with(true)
    }

    fn start_with(durable: bool) -> PgCluster {
        let durability = if durable { "on" } else { "off" };
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("pgt")
            .tempdir()
            .unwrap()
            .keep();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:", dir.to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {} to postgres failed", dir.display());
        }
        let data = dir.join("data");
        let out = as_pg_user(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("cannot run initdb");
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "initdb ({}) failed: {}",
                bin.join("initdb").display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for _attempt in 0..5 {
            let port = free_port();
            let script = r#"
                "$1/postgres" -D "$2/data" -p "$3" -k "$2" -c listen_addresses=127.0.0.1 \
                    -c fsync="$4" -c synchronous_commit="$4" -c full_page_writes="$4" \
                    -c max_connections=300 >"$2/log" 2>&1 &
                read _eof
                "$1/pg_ctl" -D "$2/data" stop -m immediate -w >/dev/null 2>&1
                rm -rf "$2"
            "#;
            let child = as_pg_user(std::path::Path::new("sh"))
                .arg("-c")
                .arg(script)
                .arg("sh")
                .arg(&bin)
                .arg(&dir)
                .arg(port.to_string())
                .arg(durability)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start the postgres watchdog");
            let c = PgCluster {
                port,
                dir: dir.clone(),
                watchdog: Mutex::new(Some(child)),
            };
            if c.wait_ready(&bin, Duration::from_secs(30)) {
                return c;
            }
            // Port taken between probe and bind, or a slow start: stop, retry.
            c.stop_keep_dir();
        }
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        panic!("PostgreSQL did not start; its log:\n{log}");
    }

    fn wait_ready(&self, bin: &std::path::Path, timeout: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            let ok = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return true;
            }
            if let Some(c) = self.watchdog.lock().unwrap().as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn stop_keep_dir(&self) {
        if let Some(mut c) = self.watchdog.lock().unwrap().take() {
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }

    /// The URL of database `db`, as the `postgres` superuser (trust auth).
    pub(crate) fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database; its URL.
    pub(crate) async fn fresh_database(&self) -> String {
        use sqlx::Connection;
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DB_SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut c = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test cluster");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        self.url(&name)
    }

    /// Runs `sql` on database `url` (for tests that poke at the database directly).
    pub(crate) async fn exec(url: &str, sql: &str) {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.watchdog.lock().unwrap().take() {
            if let Some(mut i) = c.stdin.take() {
                let _ = i.write_all(b"\n");
            }
            let _ = c.wait();
        }
    }
}

/// One cluster per test process, shared by its tests (each takes a fresh database).
/// Statics are not dropped: the watchdog stops it when the process exits.
pub(crate) fn shared() -> &'static PgCluster {
    static C: OnceLock<PgCluster> = OnceLock::new();
    C.get_or_init(PgCluster::start)
}
