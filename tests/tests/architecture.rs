//! Fitness tests for the layout (issue 11): the tree must keep showing the data flow
//! as features land. Each test reads the sources (or `cargo tree`) and fails with the
//! offending files named.
//!
//! - no source file over 800 lines (test files excepted);
//! - no import circle between the modules of any crate;
//! - the control plane's release build (`--no-default-features`, as
//!   `ci/build-release.sh` builds it) links no guest-agent code: no aya, no bollard.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `src` directories of the workspace's crates (fuzz targets excluded: one-line
/// harnesses in their own cargo project).
fn crate_srcs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root()).unwrap() {
        let p = e.unwrap().path();
        if p.join("Cargo.toml").is_file() && p.join("src").is_dir() {
            out.push(p.join("src"));
        }
    }
    out.sort();
    assert!(out.len() >= 8, "found only {out:?}");
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_test_file(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "tests.rs")
        || p.components().any(|c| c.as_os_str() == "tests")
}

#[test]
fn no_source_file_over_800_lines() {
    let mut long = Vec::new();
    for src in crate_srcs() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files.iter().filter(|f| !is_test_file(f)) {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            if n > MAX_LINES {
                long.push(format!(
                    "{} ({n} lines)",
                    f.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these along their seams (inline tests may move to a sibling tests.rs): {long:#?}"
    );
}

/// A module's path inside its crate: `src/attest/collateral/mod.rs` is
/// `attest::collateral`, `src/lib.rs` is the empty path (the root).
fn module_path(src: &Path, f: &Path) -> Vec<String> {
    let rel = f.strip_prefix(src).unwrap().with_extension("");
    let mut segs: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// Code without comments and without the inline `#[cfg(test)] mod tests` (by
/// convention the last item of a file).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module-to-module edges of one crate. Roots (lib.rs, main.rs, binaries and
/// the composition root `wiring.rs`) may depend on everything and are left out.
/// Files that hold `impl ControlPlane` are one node, `plane`: the control plane's
/// methods are split by stage over several files, but it is one type.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.retain(|f| !is_test_file(f) && !f.components().any(|c| c.as_os_str() == "bin"));
    let mods: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| {
            (
                module_path(src, f),
                code_of(&std::fs::read_to_string(f).unwrap()),
            )
        })
        .collect();
    let is_root = |m: &[String]| m.is_empty() || m == ["wiring"];
    let node = |m: &[String]| -> String {
        if mods
            .get(m)
            .is_some_and(|c| c.contains("\nimpl ControlPlane {"))
        {
            "plane".to_string()
        } else {
            m.join("::")
        }
    };
    let reference = regex::Regex::new(
        r"\b(crate|super)::((?:[a-z_][a-z0-9_]*::)*)(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)",
    )
    .unwrap();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in &mods {
        if is_root(m) {
            continue;
        }
        for c in reference.captures_iter(code) {
            // `super` in a module file is the module's parent.
            let mut base: Vec<String> = if &c[1] == "crate" {
                Vec::new()
            } else {
                m[..m.len() - 1].to_vec()
            };
            base.extend(
                c[2].split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
            let last = &c[3];
            let names: Vec<&str> = if last.starts_with('{') {
                last.trim_matches(|ch| ch == '{' || ch == '}')
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or(""))
                    .collect()
            } else {
                vec![last]
            };
            for n in names {
                let mut p = base.clone();
                p.push(n.to_string());
                while !p.is_empty() && !mods.contains_key(&p) {
                    p.pop();
                }
                if p.is_empty() || is_root(&p) || &p == m {
                    continue;
                }
                let (a, b) = (node(m), node(&p));
                // A module and its own submodules are one unit.
                if a == b || b.starts_with(&format!("{a}::")) || a.starts_with(&format!("{b}::")) {
                    continue;
                }
                edges.entry(a).or_default().insert(b);
            }
        }
    }
    edges
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            if let Some(ws) = self.edges.get(v) {
                for w in ws {
                    if !self.index.contains_key(w.as_str()) {
                        self.visit(w);
                        let lw = self.low[w.as_str()];
                        let lv = self.low.get_mut(v).unwrap();
                        *lv = (*lv).min(lw);
                    } else if self.on.contains(w.as_str()) {
                        let iw = self.index[w.as_str()];
                        let lv = self.low.get_mut(v).unwrap();
                        *lv = (*lv).min(iw);
                    }
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    // The check below must be able to fail.
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    e.entry("attest".into())
        .or_default()
        .insert("config".into());
    e.entry("config".into()).or_default().insert("store".into());
    e.entry("store".into()).or_default().insert("attest".into());
    e.entry("model".into()).or_default().insert("store".into());
    assert_eq!(cycles(&e), vec![vec!["attest", "config", "store"]]);
    e.get_mut("store").unwrap().clear();
    assert!(cycles(&e).is_empty());
}

#[test]
fn no_import_circle_between_modules() {
    let mut found = Vec::new();
    for src in crate_srcs() {
        let edges = module_edges(&src);
        for c in cycles(&edges) {
            let detail: Vec<String> = c
                .iter()
                .map(|a| {
                    let to: Vec<&String> = edges[a].iter().filter(|b| c.contains(b)).collect();
                    format!("{a} -> {to:?}")
                })
                .collect();
            found.push(format!(
                "{}: {}",
                src.strip_prefix(root()).unwrap().display(),
                detail.join("; ")
            ));
        }
    }
    assert!(found.is_empty(), "import circles: {found:#?}");
}

fn cargo_tree(args: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "-p",
            "cp-verifier",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "--offline"])
        .args(args)
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn control_plane_release_build_links_no_guest_code() {
    let guest = ["guest-agent", "aya", "aya-obj", "bollard"];
    let release = cargo_tree(&["--no-default-features"]);
    let linked: Vec<&&str> = guest.iter().filter(|g| release.contains(**g)).collect();
    assert!(
        linked.is_empty(),
        "the release control plane links {linked:?}"
    );
    assert!(release.contains("dcap-qvl") && release.contains("axum"));
    // The default build (with the demo's in-process agent) does link them: the check
    // above looks at the right tree.
    let demo = cargo_tree(&[]);
    assert!(
        guest.iter().all(|g| demo.contains(*g)),
        "demo tree lacks the agent"
    );
}
