#!/usr/bin/env bash
# Installs what a fresh machine needs to build and test Prism.
#
# - The Rust toolchain pinned in rust-toolchain.toml, with the wasm32-wasip1
#   target and rustfmt/clippy (rustup reads the file; this makes the install
#   happen up front, with a clear error if rustup is missing).
# Idempotent: running it again changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v rustup >/dev/null 2>&1; then
    echo "error: rustup is required (https://rustup.rs)" >&2
    exit 1
fi
# With no arguments, `rustup toolchain install` installs the toolchain named
# by rust-toolchain.toml, with its targets and components.
rustup toolchain install
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    rustup target add wasm32-wasip1
fi
echo "toolchain ready: $(rustc --version), targets: $(rustup target list --installed | tr '\n' ' ')"
