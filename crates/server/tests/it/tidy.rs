//! House rules checked on the sources: every Rust file says what it owns, and nothing is left
//! marked for later.

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

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
