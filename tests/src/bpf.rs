//! Real BPF programs for tests (run as root): a fresh bpffs mounted under a test
//! directory, the checked-in `tests/bpf/socket_filter.c` compiled with Debian's
//! clang, loaded and pinned with `bpftool`. Needs clang, bpftool, linux-libc-dev.

use std::path::{Path, PathBuf};
use std::process::Command;

use guest_agent::ebpf::program_hash;
use serde_json::Value;

/// Runs `cmd`, which must succeed; returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A bpffs mounted under a temporary directory; pins removed and unmounted on drop.
pub struct BpfFs {
    _dir: tempfile::TempDir,
    pub work: PathBuf,
    pub mnt: PathBuf,
}

impl BpfFs {
    pub fn new() -> BpfFs {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("bpffs");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&mnt));
        BpfFs {
            _dir: dir,
            work,
            mnt,
        }
    }

    /// Compiles the test program (with `-DVARIANT=variant`) into the work directory.
    pub fn compile(&self, variant: u32) -> PathBuf {
        self.compile_named(variant, "provenant_test")
    }

    /// [`BpfFs::compile`], the program named `name` (the kernel keeps 15 characters).
    pub fn compile_named(&self, variant: u32, name: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf/socket_filter.c");
        let out = self.work.join(format!("{name}-{variant}.o"));
        run(Command::new("clang")
            .args([
                "-O2",
                "-g",
                "-target",
                "bpf",
                "-I/usr/include/x86_64-linux-gnu",
            ])
            .arg(format!("-DVARIANT={variant}"))
            .arg(format!("-DPROG_NAME={name}"))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&out));
        out
    }

    /// `bpftool prog load OBJ PIN`; returns the pin path.
    pub fn load(&self, obj: &Path, name: &str) -> PathBuf {
        let pin = self.mnt.join(name);
        run(Command::new("bpftool")
            .args(["prog", "load"])
            .arg(obj)
            .arg(&pin));
        pin
    }

    /// Pins the program pinned at `pin` at a second path `also` as well.
    pub fn pin_again(&self, pin: &Path, also: &Path) {
        run(Command::new("bpftool")
            .args(["prog", "pin", "pinned"])
            .arg(pin)
            .arg(also));
    }

    pub fn show(&self, pin: &Path) -> Value {
        let out = run(Command::new("bpftool")
            .args(["prog", "show", "pinned"])
            .arg(pin)
            .arg("-j"));
        serde_json::from_str(&out).unwrap()
    }

    /// The translated instructions as bpftool dumps them, hashed the collector's way.
    pub fn bpftool_hash(&self, pin: &Path) -> evidence::Digest32 {
        let f = self.work.join("xlated.bin");
        run(Command::new("bpftool")
            .args(["prog", "dump", "xlated", "pinned"])
            .arg(pin)
            .arg("file")
            .arg(&f));
        program_hash(std::fs::read(&f).unwrap())
    }
}

impl Default for BpfFs {
    fn default() -> BpfFs {
        BpfFs::new()
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.mnt) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}
