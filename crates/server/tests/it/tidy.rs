//! House rules checked on the sources: every Rust file says what it owns, nothing is left
//! marked for later, the crates depend on each other only as ARCHITECTURE.md allows, and every
//! file a document names exists.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn workspace_files() -> Vec<PathBuf> {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("fuzz/fuzz_targets"), &mut files);
    files
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<_> = workspace_files()
        .into_iter()
        .filter(|path| path.file_name().is_some_and(|n| n != "build.rs"))
        .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "files without a //! line: {missing:?}");
}

#[test]
fn nothing_is_left_marked_for_later() {
    let marks = ["FIX", "ME"].concat();
    let todo = ["TO", "DO"].concat();
    let debug_print = ["db", "g!("].concat();
    let marked: Vec<_> = workspace_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            text.contains(&marks) || text.contains(&todo) || text.contains(&debug_print)
        })
        .collect();
    assert!(marked.is_empty(), "marked files: {marked:?}");
}

#[test]
fn every_metric_recorded_has_help_text() {
    let catalogue = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/telemetry.rs");
    let catalogue = std::fs::read_to_string(catalogue).unwrap();
    let mut undescribed = Vec::new();
    for path in workspace_files().iter().filter(|p| !p.ends_with("telemetry.rs")) {
        let text = std::fs::read_to_string(path).unwrap();
        for macro_call in ["counter!(", "gauge!(", "histogram!(", "Latency::new("] {
            for (at, _) in text.match_indices(macro_call) {
                // The name is the macro's first argument, possibly on the next line.
                let rest = text[at + macro_call.len()..].trim_start();
                let name = rest.strip_prefix('"').and_then(|r| r.split('"').next());
                let Some(name) = name.filter(|n| n.starts_with("missive_")) else { continue };
                if !catalogue.contains(&format!("\"{name}\"")) {
                    undescribed.push(format!("{name} ({})", path.display()));
                }
            }
        }
    }
    assert!(undescribed.is_empty(), "metrics without help text in telemetry.rs: {undescribed:?}");
}

#[test]
fn every_metric_with_help_text_is_in_the_operations_guide() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let catalogue = std::fs::read_to_string(root.join("crates/server/src/telemetry.rs")).unwrap();
    let guide = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let names: Vec<&str> = catalogue
        .split('"')
        .filter(|token| token.starts_with("missive_") && !token.contains(' '))
        .collect();
    assert!(names.len() > 30, "the catalogue is read: {names:?}");
    let missing: Vec<&&str> =
        names.iter().filter(|name| !guide.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "metrics docs/operations.md does not list: {missing:?}");
}

/// The layering of ARCHITECTURE.md, as the crates' `[dependencies]` on each other: the logic
/// layer never reaches a socket or a storage backend, the access layer never reaches logic or
/// storage, the storage backends know only the schema, clients never build a tier.
const ALLOWED_DEPENDENCIES: &[(&str, &[&str])] = &[
    ("tls", &[]),
    ("rpc", &["tls"]),
    ("proto", &["rpc"]),
    ("search", &["proto"]),
    ("access", &["proto", "rpc", "tls"]),
    ("logic", &["proto", "rpc", "search"]),
    ("storage-embedded", &["proto", "rpc", "search"]),
    ("storage-sql", &["proto", "rpc", "search"]),
    ("storage-suite", &["proto", "rpc", "search"]),
    ("route", &["access", "proto", "rpc"]),
    ("push", &["proto", "rpc", "tls"]),
    ("ops", &["proto", "rpc", "tls"]),
    ("client", &["proto", "rpc", "tls"]),
    ("cli", &["client", "proto", "rpc"]),
    (
        "server",
        &[
            "access",
            "logic",
            "ops",
            "proto",
            "push",
            "route",
            "rpc",
            "storage-embedded",
            "storage-sql",
            "tls",
        ],
    ),
];

/// The workspace crates a manifest's `[dependencies]` (not dev or build) names.
fn missive_dependencies(manifest: &str) -> Vec<String> {
    let mut section = "";
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[dependencies]"
            && let Some(name) = line.strip_prefix("missive-")
        {
            names.push(name.split(['.', ' ', '=']).next().unwrap().to_string());
        }
    }
    names.sort();
    names
}

#[test]
fn crates_depend_on_each_other_only_as_the_architecture_allows() {
    let crates = root().join("crates");
    let mut found: Vec<String> = std::fs::read_dir(&crates)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    let mut listed: Vec<String> = ALLOWED_DEPENDENCIES.iter().map(|(c, _)| c.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "every crate has a row in ALLOWED_DEPENDENCIES");
    let mut breaches = Vec::new();
    for (name, allowed) in ALLOWED_DEPENDENCIES {
        let manifest = std::fs::read_to_string(crates.join(name).join("Cargo.toml")).unwrap();
        for dependency in missive_dependencies(&manifest) {
            if !allowed.contains(&dependency.as_str()) {
                breaches.push(format!("{name} -> {dependency}"));
            }
        }
    }
    assert!(breaches.is_empty(), "dependencies ARCHITECTURE.md does not allow: {breaches:?}");
    // The client SDK and the logic layer never build the remote transport's server stacks.
    for name in ["client", "logic"] {
        let manifest = std::fs::read_to_string(crates.join(name).join("Cargo.toml")).unwrap();
        let dependencies = manifest.split("[dependencies]").nth(1).unwrap();
        let dependencies = dependencies.split("\n[").next().unwrap();
        assert!(!dependencies.contains("\"remote\""), "{name} asks for the remote feature");
    }
}

fn documents(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && !matches!(name.as_str(), "target" | "node_modules") {
                documents(&path, out);
            }
        } else if name.ends_with(".md") || name.ends_with(".rs") || name.ends_with(".proto") {
            out.push(path);
        }
    }
}

/// The paths a document names: the targets of its Markdown links (not rustdoc's links to
/// items), and every `code span` that is a file path starting at one of `roots` (a top-level
/// folder or a crate's folder), without a placeholder or a glob.
fn named_paths(text: &str, roots: &[String]) -> Vec<String> {
    let mut paths = Vec::new();
    for link in text.split("](").skip(1) {
        let target = link.split(')').next().unwrap().split('#').next().unwrap();
        let elsewhere = target.contains("://") || target.starts_with("mailto:");
        let item = target.contains("::") || target.contains('"');
        if !target.is_empty() && !elsewhere && !item {
            paths.push(target.to_string());
        }
    }
    for span in text.split('`').skip(1).step_by(2) {
        let extension = span.rsplit('.').next().unwrap_or("");
        let looks_like_a_file =
            ["rs", "md", "proto", "sql", "toml", "json", "yml", "html", "js"].contains(&extension);
        let first = span.split('/').next().unwrap();
        let rooted = span.contains('/') && roots.iter().any(|root| root == first);
        let placeholder = span.contains(|c: char| "*<>{}: \n$".contains(c));
        if looks_like_a_file && rooted && !placeholder {
            paths.push(span.to_string());
        }
    }
    paths
}

#[test]
fn every_file_a_document_names_exists() {
    let root = root();
    let crates: Vec<PathBuf> =
        std::fs::read_dir(root.join("crates")).unwrap().map(|e| e.unwrap().path()).collect();
    let mut files = Vec::new();
    documents(&root, &mut files);
    assert!(files.len() > 100, "the tree is read: {} files", files.len());
    let roots: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .chain(std::fs::read_dir(root.join("crates")).unwrap())
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect();
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let here = file.parent().unwrap();
        // Paths are written from the root, from `crates/`, from the file's own folder, or
        // from a crate's folder (ARCHITECTURE.md's code map: `proto/client.proto`).
        let bases: Vec<PathBuf> = [root.clone(), root.join("crates"), here.to_path_buf()]
            .into_iter()
            .chain(crates.iter().cloned())
            .collect();
        for path in named_paths(&text, &roots) {
            if !bases.iter().any(|base| base.join(&path).exists()) {
                missing
                    .push(format!("{} names {path}", file.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(missing.is_empty(), "documents name files that do not exist: {missing:#?}");
}

#[test]
fn the_protocol_documents_every_command_of_the_schema() {
    let document = std::fs::read_to_string(root().join("docs/protocol.md")).unwrap();
    let table = document.split("### 6.1 Command table").nth(1).unwrap();
    let table = table.split("\n### ").next().unwrap();
    let mut documented: Vec<(u16, String)> = Vec::new();
    for line in table.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(number) = cells.get(1).and_then(|n| n.parse().ok()) else { continue };
        let name = cells[2].to_string();
        // The short-link path, where the row gives one, is the name in lower case.
        if let Some(path) = cells[3].split('`').nth(1) {
            assert_eq!(path, format!("/v1/{}", name.to_lowercase()), "{line}");
        }
        documented.push((number, name));
    }
    let schema: Vec<(u16, String)> =
        missive_proto::Command::ALL.iter().map(|c| (*c as u16, c.name().to_uppercase())).collect();
    assert_eq!(documented, schema, "docs/protocol.md §6.1 against client.proto's Command");
}
