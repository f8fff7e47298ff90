//! Records the commit the simulator is built from, so every summary says
//! which code produced it (`specs/simulation.md` §2). Outside a git
//! checkout, or without git, it is "unknown".

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let version = format!(
        "{} ({commit}{})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        if dirty { ", modified" } else { "" }
    );
    println!("cargo:rustc-env=MTOS_SIM_VERSION={version}");
    // The commit moves with these; "modified" with the sources the
    // simulator is built from.
    for path in [
        "../.git/HEAD",
        "../.git/refs/heads",
        "../.git/packed-refs",
        "../.git/index",
        "src",
        "../mixnode/src",
        "../crypto/src",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
}
