//! The TypeScript SDK (`clients/sdk`) against this binary: its own tests, under Node, start
//! `missive serve` themselves (on free ports, the embedded store in a fresh directory) and
//! drive it through the SDK over real WebSockets and HTTP. And the protobuf code the SDK was
//! built with must be what the schema generates today.

use std::path::{Path, PathBuf};
use std::process::Command;

fn clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients")
}

/// A tool the clients' `npm ci` installed (scripts/install-test-tools runs it).
fn npm_tool(name: &str) -> PathBuf {
    let path = clients().join("node_modules/.bin").join(name);
    assert!(path.exists(), "{} is missing: run scripts/install-test-tools", path.display());
    path
}

fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{what} does not run: {error}"));
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed:\n{out}\n{err}");
    out.into_owned()
}

#[test]
fn the_typescript_sdk_passes_its_own_tests_against_this_binary() {
    let sdk = clients().join("sdk");
    run(Command::new(npm_tool("tsc")).arg("-p").arg(&sdk), "tsc (type check and build)");
    let mut tests: Vec<PathBuf> = std::fs::read_dir(sdk.join("dist/test"))
        .expect("tsc wrote dist/test")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".test.js"))
        .collect();
    tests.sort();
    assert!(tests.len() >= 2, "the SDK's test files: {tests:?}");
    let out = run(
        Command::new("node")
            // Node 20's WebSocket; later versions have it without the flag.
            .arg("--experimental-websocket")
            .arg("--test")
            .args(&tests)
            .env("MISSIVE_BIN", env!("CARGO_BIN_EXE_missive"))
            .current_dir(&sdk),
        "the SDK's tests",
    );
    assert!(out.contains("# fail 0"), "{out}");
}

#[test]
fn the_sdks_protobuf_code_is_what_the_schema_generates() {
    let sdk = clients().join("sdk");
    let fresh = tempfile::tempdir().unwrap();
    run(
        Command::new(npm_tool("buf")).args(["generate", "-o"]).arg(fresh.path()).current_dir(&sdk),
        "buf generate",
    );
    let generated = std::fs::read_to_string(fresh.path().join("src/gen/client_pb.ts")).unwrap();
    let committed = std::fs::read_to_string(sdk.join("src/gen/client_pb.ts")).unwrap();
    assert!(
        generated == committed,
        "clients/sdk/src/gen is stale: run `npm run generate --workspace sdk` in clients/"
    );
}
