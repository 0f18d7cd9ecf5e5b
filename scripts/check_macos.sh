#!/usr/bin/env bash
# Type-checks (and lints) the macOS-only camera file, pipeline/src/source/camera/macos.rs,
# for aarch64-apple-darwin on a Linux machine. The whole crate cannot be checked for that
# target here: its C parts' build scripts (objc_exception under nokhwa-bindings-macos, then
# mozjpeg) need Apple's clang and SDK. So a scratch crate includes the file by path, with the
# same objc2 crates and nokhwa without its C decoder, and a stand-in for the one type it uses
# from its parent module. Needs `rustup target add aarch64-apple-darwin`; the macOS CI job is
# what builds and runs it for real.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="${TMPDIR:-/tmp}/scened-check-macos"
mkdir -p "$SCRATCH/src"
cat > "$SCRATCH/Cargo.toml" <<TOML
[package]
name = "check-macos"
version = "0.0.0"
edition = "2021"

[dependencies]
nokhwa = { version = "0.10.11", default-features = false }
thiserror = "2.0.21"
$(sed -n '/^objc2/p' "$ROOT/pipeline/Cargo.toml")
TOML
cat > "$SCRATCH/src/lib.rs" <<RUST
mod choice {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct CameraEntry {
        pub index: u32,
        pub id: Option<String>,
        pub name: String,
        pub description: String,
    }
}
#[path = "$ROOT/pipeline/src/source/camera/macos.rs"]
pub mod macos;
RUST
cd "$SCRATCH"
cargo clippy --quiet --target aarch64-apple-darwin --tests -- -D warnings
echo "macos.rs type-checks and lints clean for aarch64-apple-darwin"
