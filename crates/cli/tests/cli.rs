//! The binaries' argument handling (and, as a side effect, cargo builds them before the
//! workspace's end-to-end tests run).

use std::process::Command;

#[test]
fn help_names_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_missive-cli")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["register", "login", "send", "sync", "watch", "chat", "logout"] {
        assert!(help.contains(command), "{command} missing from help");
    }
}

#[test]
fn bench_refuses_fewer_than_two_users() {
    let out = Command::new(env!("CARGO_BIN_EXE_missive-bench"))
        .args(["--server", "tcp://127.0.0.1:1", "--users", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 2"));
}
