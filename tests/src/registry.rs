//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on
//! 127.0.0.1, storing under a test directory. `.ci/run` installs the package.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{free_port, Proc};

/// A running `docker-registry serve` on loopback; stopped when dropped.
pub struct Registry {
    /// `127.0.0.1:PORT`: the registry host as it appears in image references.
    pub host: String,
    pub dir: PathBuf,
    proc: Option<Proc>,
    config: PathBuf,
    log_dir: PathBuf,
}

impl Registry {
    /// Starts a registry storing under `dir/registry`, logging into `log_dir`.
    pub fn start(dir: &Path, log_dir: &Path) -> Registry {
        let port = free_port();
        let root = dir.join("registry");
        std::fs::create_dir_all(&root).expect("registry dir");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                root.display()
            ),
        )
        .expect("registry config");
        let mut r = Registry {
            host: format!("127.0.0.1:{port}"),
            dir: root,
            proc: None,
            config,
            log_dir: log_dir.to_path_buf(),
        };
        r.restart();
        r
    }

    /// Stops the registry (the stored images stay on disk).
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Starts it again on the same address and storage.
    pub fn restart(&mut self) {
        self.proc = None;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&self.config);
        self.proc = Some(Proc::spawn_cmd("docker-registry", cmd, &self.log_dir));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&self.host).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not listen on {}: {}",
                self.host,
                self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }
}
