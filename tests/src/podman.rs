//! Real podman for tests (Debian's podman 4.3 as root), isolated per test: its own
//! storage root and run root under the test directory, and the `containers.conf`
//! this sandbox needs (FACTS.md "Running podman on these machines": runc, cgroupfs,
//! no default ulimits, file events logger). `.ci/run` installs `podman`, `runc` and
//! `busybox-static`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::Proc;

/// Statically linked busybox from Debian's `busybox-static`: the one program the
/// test images (`FROM scratch`) carry.
pub const BUSYBOX: &str = "/bin/busybox";

/// One isolated podman installation. Containers and storage are removed on drop.
pub struct Podman {
    pub dir: PathBuf,
    pub conf: PathBuf,
    root: PathBuf,
    runroot: PathBuf,
    log_dir: PathBuf,
    service: Option<Proc>,
}

impl Podman {
    /// A podman whose storage lives under `dir/NAME` (so several can coexist: a
    /// "builder" that builds and pushes, and a "guest" that only pulls).
    pub fn new(dir: &Path, name: &str, log_dir: &Path) -> Podman {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("podman dir");
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 # Per installation, so concurrent tests do not share (and reset) /run/libpod.\n\
                 tmp_dir = \"{}\"\n",
                dir.join("tmp").display()
            ),
        )
        .expect("containers.conf");
        Podman {
            root: dir.join("root"),
            runroot: dir.join("runroot"),
            conf,
            dir,
            log_dir: log_dir.to_path_buf(),
            service: None,
        }
    }

    /// `podman` with this installation's environment and storage flags.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf)
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
        c
    }

    /// The argv prefix that reaches this installation (to give to other programs,
    /// with `CONTAINERS_CONF` = [`Podman::conf`] in their environment).
    pub fn argv(&self) -> Vec<String> {
        let c = self.cmd();
        std::iter::once(c.get_program().to_string_lossy().into_owned())
            .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }

    /// Runs `podman ARGS`, whatever its outcome.
    pub fn try_run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run podman {args:?}: {e}"))
    }

    /// Runs `podman ARGS`, which must succeed; returns its trimmed stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let o = self.try_run(args);
        assert!(
            o.status.success(),
            "podman {args:?} failed: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// Builds `tag` as `FROM scratch` + static busybox (entrypoint `sleep 3600`) +
    /// a file `/marker` holding `marker`, so each marker gives a distinct image.
    pub fn build_scratch(&self, tag: &str, marker: &str) {
        let ctx = self.dir.join(format!(
            "ctx-{}",
            tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ));
        std::fs::create_dir_all(&ctx).expect("build context");
        std::fs::copy(BUSYBOX, ctx.join("busybox")).expect("busybox-static is installed");
        std::fs::write(ctx.join("marker"), marker).expect("marker");
        std::fs::write(
            ctx.join("Containerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY marker /marker\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"sleep\", \"3600\"]\n",
        )
        .expect("Containerfile");
        self.run(&["build", "-q", "-t", tag, ctx.to_str().expect("utf-8 path")]);
    }

    /// Pushes a local image to a plain-http registry; returns the manifest digest
    /// the registry stored (`sha256:..`).
    pub fn push(&self, local: &str, remote: &str) -> String {
        let digest_file = self.dir.join("push-digest");
        self.run(&[
            "push",
            "-q",
            "--tls-verify=false",
            "--digestfile",
            digest_file.to_str().expect("utf-8 path"),
            local,
            remote,
        ]);
        std::fs::read_to_string(&digest_file)
            .expect("podman wrote the digest file")
            .trim()
            .to_owned()
    }

    /// Starts `podman system service` on `dir/podman.sock`; returns the socket path
    /// once it answers.
    pub fn start_service(&mut self) -> PathBuf {
        let sock = self.socket();
        let _ = std::fs::remove_file(&sock);
        let mut c = self.cmd();
        c.args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()));
        self.service = Some(Proc::spawn_cmd("podman-service", c, &self.log_dir));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                Instant::now() < deadline,
                "podman system service did not listen on {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sock
    }

    /// Stops the API service (containers keep running).
    pub fn stop_service(&mut self) {
        self.service = None;
    }

    /// Where the API socket is (or will be).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("podman.sock")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.service = None;
        // Containers hold overlay mounts under the root; remove them, then storage.
        let _ = self.try_run(&["rm", "-af", "-t", "0"]);
        let _ = self.try_run(&["system", "reset", "--force"]);
    }
}
