//! What `.ci/setup` does on a Mac, run here: `uname` says Darwin, and `brew`, `xcode-select`
//! and `npm` are stand-ins that record how they were called. `apt-get` and `sudo` are there
//! too, recording, so calling them is caught rather than run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// A folder of stand-in commands, each appending `name args…` to `calls.log`, plus the real
/// tools the script itself needs.
fn stand_ins(dir: &Path, with_npm: bool) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls.log");
    let recorder = |name: &str, file: &str, then: &str| {
        let script = format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{then}\n",
            log.display()
        );
        let path = bin.join(file);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    };
    recorder("uname", "uname", "echo Darwin");
    recorder(
        "xcode-select",
        "xcode-select",
        "echo /Library/Developer/CommandLineTools",
    );
    // Installing node brings npm, as Homebrew's does.
    recorder("npm", if with_npm { "npm" } else { "npm.later" }, "");
    let later = bin.join("npm.later");
    let brings_npm = format!(
        "case \" $* \" in *\" node \"*) mv '{}' '{}';; esac",
        later.display(),
        bin.join("npm").display()
    );
    recorder("brew", "brew", &brings_npm);
    // No targets installed: setup adds the one scripts/check_macos.sh checks for.
    recorder("rustup", "rustup", "");
    recorder("apt-get", "apt-get", "exit 1");
    recorder("sudo", "sudo", "exit 1");
    for tool in ["bash", "sh", "dirname", "mv", "grep"] {
        let real = ["/bin", "/usr/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(tool))
            .find(|path| path.exists())
            .unwrap_or_else(|| panic!("no {tool} in /bin or /usr/bin"));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    log
}

/// The calls `.ci/setup` made, `uname`'s left out and the repository's path as `<repo>`.
fn darwin_setup(name: &str, with_npm: bool) -> Vec<String> {
    let dir = tmp_dir(name);
    let log = stand_ins(&dir, with_npm);
    let out = Command::new(dir.join("bin/bash"))
        .arg(repo().join(".ci/setup"))
        .env_clear()
        .env("PATH", dir.join("bin"))
        .env("HOME", &dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let repo = repo().display().to_string();
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|call| !call.starts_with("uname "))
        .map(|call| call.replace(&repo, "<repo>"))
        .collect()
}

#[test]
fn setup_on_darwin_uses_homebrew_and_never_apt_or_sudo() {
    assert_eq!(
        darwin_setup("setup-darwin", true),
        [
            "xcode-select -p",
            "brew install prometheus mosquitto actionlint shellcheck cargo-nextest",
            "brew install gstreamer pygobject3 ffmpeg",
            "rustup target list --installed",
            "rustup target add aarch64-apple-darwin",
            "npm ci --prefix <repo>/grafana/check --no-audit --no-fund",
        ]
    );
    // Without npm, Homebrew's node brings it.
    assert_eq!(
        darwin_setup("setup-darwin-no-npm", false),
        [
            "xcode-select -p",
            "brew install prometheus mosquitto actionlint shellcheck cargo-nextest",
            "brew install gstreamer pygobject3 ffmpeg",
            "brew install node",
            "rustup target list --installed",
            "rustup target add aarch64-apple-darwin",
            "npm ci --prefix <repo>/grafana/check --no-audit --no-fund",
        ]
    );
}

/// The Info.plist macOS reads from the binary: the camera prompt's text and the Continuity
/// Camera opt-in (the macOS CI job lints it with plutil and checks it is embedded).
#[test]
fn the_info_plist_asks_for_the_camera_and_opts_in_to_continuity_camera() {
    let plist = fs::read_to_string(repo().join("macos/Info.plist")).unwrap();
    let value_of = |key: &str| {
        let after = plist
            .split_once(&format!("<key>{key}</key>"))
            .unwrap_or_else(|| panic!("{key} missing"))
            .1;
        after.trim_start().lines().next().unwrap().trim().to_owned()
    };
    assert_eq!(value_of("NSCameraUseContinuityCameraDeviceType"), "<true/>");
    let text = value_of("NSCameraUsageDescription");
    assert!(text.starts_with("<string>") && text.len() > 30, "{text}");
    assert_eq!(
        value_of("CFBundleIdentifier"),
        "<string>io.github.scened</string>"
    );
}
