//! A test that needs a program fails, naming the package to install.

use std::process::{Command, Stdio};

/// Fail with an install hint when a peer program is missing.
pub fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is required for this test: apt-get install {package}"
    );
}
