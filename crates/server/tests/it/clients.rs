//! The TypeScript clients (`clients/`) against this binary. The SDK's own tests, under Node,
//! start `missive serve` themselves (on free ports, the embedded store in a fresh directory)
//! and drive it through the SDK over real WebSockets and HTTP; the web app's test drives the
//! app this binary serves in Debian's Chromium, with `missive-cli` as a protocol-1 member of
//! its group. What is committed must be what the sources build: the SDK's protobuf code and
//! the web app's bundle the binary embeds.

use crate::harness::workspace_binary;
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

/// `node --test` over these files, with the binaries the tests start.
fn node_tests(dir: &Path, files: &[PathBuf], what: &str) {
    let out = run(
        Command::new("node")
            // Node 20's WebSocket; later versions have it without the flag.
            .arg("--experimental-websocket")
            .arg("--test")
            .args(files)
            .env("MISSIVE_BIN", env!("CARGO_BIN_EXE_missive"))
            .env("MISSIVE_CLI", workspace_binary("missive-cli"))
            .current_dir(dir),
        what,
    );
    assert!(out.contains("# fail 0"), "{out}");
}

/// One test, so that the SDK's build (which the web app's test imports its server helper
/// from) is written once.
#[test]
fn the_sdk_passes_its_tests_and_the_web_app_its_browser_test_against_this_binary() {
    let sdk = clients().join("sdk");
    run(Command::new(npm_tool("tsc")).arg("-p").arg(&sdk), "tsc (type check and build)");
    let mut tests: Vec<PathBuf> = std::fs::read_dir(sdk.join("dist/test"))
        .expect("tsc wrote dist/test")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".test.js"))
        .collect();
    tests.sort();
    assert!(tests.len() >= 2, "the SDK's test files: {tests:?}");
    node_tests(&sdk, &tests, "the SDK's tests");

    let web = clients().join("web");
    run(Command::new(npm_tool("tsc")).arg("-p").arg(&web), "tsc (the web app's type check)");
    node_tests(&web, &[web.join("test/app.test.mjs")], "the web app's browser test");
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

#[test]
fn the_web_app_the_binary_embeds_is_what_its_sources_build() {
    let web = clients().join("web");
    let fresh = tempfile::tempdir().unwrap();
    run(Command::new("node").arg(web.join("build.mjs")).arg(fresh.path()), "the web app's build");
    for file in ["index.html", "app.js", "app.css"] {
        let built = std::fs::read(fresh.path().join(file)).unwrap();
        let committed = std::fs::read(web.join("dist").join(file)).unwrap();
        assert!(
            built == committed,
            "clients/web/dist/{file} is stale: run `npm run build --workspace web` in clients/"
        );
    }
}
