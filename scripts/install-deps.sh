#!/usr/bin/env bash
# Installs what a fresh machine needs to build and test Prism.
#
# - The Rust toolchain pinned in rust-toolchain.toml, with the wasm32-wasip1
#   target and rustfmt/clippy (rustup reads the file; this makes the install
#   happen up front, with a clear error if rustup is missing).
# - A Vulkan loader and driver for the GPU examples and tests: a machine with
#   a GPU and its vendor's Vulkan driver has them already; elsewhere this
#   installs Debian's mesa-vulkan-drivers, whose lavapipe is a software
#   Vulkan device that runs the same wgpu path on the CPU.
# - Chromium and its WebDriver (Debian's chromium and chromium-driver), for
#   the end-to-end tests that drive the web dashboard in a real browser.
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

# Installs Debian packages "$@" with apt-get (updating its lists if the
# first try fails); `what` names them in the error when apt-get is missing.
apt_install() {
    local what="$1"
    shift
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: $what missing and no apt-get to install it; install your distribution's $what" >&2
        exit 1
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get install -y --no-install-recommends "$@"; then
        $sudo apt-get update
        $sudo apt-get install -y --no-install-recommends "$@"
    fi
}

# Vulkan: the loader (libvulkan.so.1) and at least one driver manifest (ICD).
have_vulkan() {
    ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null &&
        { compgen -G '/usr/share/vulkan/icd.d/*.json' || compgen -G '/etc/vulkan/icd.d/*.json'; } >/dev/null
}
if ! have_vulkan; then
    apt_install "Mesa Vulkan drivers (lavapipe) and Vulkan loader" mesa-vulkan-drivers libvulkan1
    have_vulkan || { echo "error: Vulkan is still missing after installing mesa-vulkan-drivers libvulkan1" >&2; exit 1; }
fi
echo "vulkan ready: $({ compgen -G '/usr/share/vulkan/icd.d/*.json'; compgen -G '/etc/vulkan/icd.d/*.json'; } | xargs -n1 basename | tr '\n' ' ')"

# Chromium and ChromeDriver for the dashboard's browser tests.
have_chromium() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
}
if ! have_chromium; then
    apt_install "Chromium and its WebDriver" chromium chromium-driver
    have_chromium || { echo "error: chromium is still missing after installing chromium chromium-driver" >&2; exit 1; }
fi
echo "browser ready: $(chromium --version 2>/dev/null | head -1), $(chromedriver --version 2>/dev/null | head -1)"
