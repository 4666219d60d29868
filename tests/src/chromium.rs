//! Headless Chromium (Debian's `chromium`) for page tests: the DOM after the page
//! has loaded and rendered, and screenshots. Each run gets a fresh profile directory
//! and no network features beyond the page itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest one Chromium run may take before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The Chromium binary: `$CHROMIUM` or `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn run(extra: &[&str], url: &str) -> (String, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = profile.path().join("stdout");
    let err = profile.path().join("stderr");
    let mut cmd = Command::new(chromium_path());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!(
        "--user-data-dir={}",
        profile.path().join("p").display()
    ))
    .args(extra)
    // Every page the tests open is the control plane's: read access needs the token.
    .arg(crate::with_token(url))
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out).expect("stdout file"))
    .stderr(std::fs::File::create(&err).expect("stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium_path().display()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for chromium") {
            break s;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {}s for {url}: {}",
                RUN_LIMIT.as_secs(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        status.success(),
        "chromium failed ({status}) for {url}: {stderr}"
    );
    (stdout, stderr)
}

/// The DOM of `url` after load, serialised (`--dump-dom`).
pub fn dump_dom(url: &str) -> String {
    let (dom, stderr) = run(&["--dump-dom"], url);
    assert!(
        !dom.trim().is_empty(),
        "chromium returned an empty DOM for {url}: {stderr}"
    );
    dom
}

/// A 1280x900 PNG of `url` at `png_path` (parent directories are created).
pub fn screenshot(url: &str, png_path: &Path) {
    if let Some(d) = png_path.parent() {
        std::fs::create_dir_all(d).expect("screenshot dir");
    }
    let _ = std::fs::remove_file(png_path);
    run(
        &[
            &format!("--screenshot={}", png_path.display()),
            "--window-size=1280,1600",
        ],
        url,
    );
    let png = std::fs::read(png_path)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png_path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} is not a plausible PNG",
        png_path.display()
    );
}

/// The elements of `dom` whose start tag contains `attr` (e.g. `data-workload="web"`),
/// each from its `<` to the end of its start tag plus the text up to the next `<`.
/// Enough to read server-rendered badges without an HTML parser.
pub fn elements_with<'a>(dom: &'a str, attr: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = dom[from..].find(attr) {
        let at = from + i;
        let start = dom[..at].rfind('<').unwrap_or(at);
        let tag_end = dom[at..].find('>').map_or(dom.len(), |j| at + j + 1);
        let text_end = dom[tag_end..].find('<').map_or(dom.len(), |j| tag_end + j);
        out.push(&dom[start..text_end]);
        from = tag_end.max(at + attr.len());
    }
    out
}

/// The `<tr data-workload=NAME>` row of a fleet page.
pub fn row<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("<tr data-workload=\"{name}\""))
        .unwrap_or_else(|| panic!("no row for workload {name} in {dom}"));
    let end = dom[start..]
        .find("</tr>")
        .map_or(dom.len(), |i| start + i + 5);
    &dom[start..end]
}

/// `target/test-artifacts/`: where screenshots are kept.
pub fn artifacts_dir() -> PathBuf {
    // target/<profile>/deps/<test> -> target/test-artifacts
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("test binary under target/")
        .join("test-artifacts")
}
