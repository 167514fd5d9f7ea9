#!/usr/bin/env bash
# Machine set-up for pve-rebalancer: everything the demo and the test suite need that is not a crate.
# Idempotent: each step checks first and does nothing when already done (a warm run takes < 1 s).
#
#   xtask/setup.sh            toolchain for tests and the demo (no wasm-opt)
#   WITH_WASM_OPT=1 xtask/setup.sh   also binaryen's wasm-opt (size budgets, .deb; ~15 min once)
#
# Why this route: rustup's toolchains here carry no wasm32 std and cannot download one. Debian's
# rustc-web 1.96 + rust-web-src build std for wasm32 from source (-Zbuild-std, RUSTC_BOOTSTRAP=1);
# rustup's rust-lld links it. trunk / wasm-bindgen-cli / wasm-opt come from crates.io.
set -euo pipefail

TRUNK_VERSION=0.21.14          # 0.22 needs rustc >= 1.96.1
WASM_OPT_VERSION=0.116.1       # binaryen 116; Debian's binaryen 108 emits wasm that crashes at start
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# wasm-bindgen-cli must equal the wasm-bindgen crate; frontend/Cargo.toml pins it with "=x.y.z".
WASM_BINDGEN_VERSION="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' "$ROOT/frontend/Cargo.toml" 2>/dev/null | head -n1 || true)"
WASM_BINDGEN_VERSION="${WASM_BINDGEN_VERSION:-0.2.130}"
WEB_BIN=/opt/rust-web/bin
RUSTUP_BIN="$HOME/.cargo/bin"
export DEBIAN_FRONTEND=noninteractive

say() { printf '[setup] %s\n' "$*" >&2; }

# Python venv for the peer (ProxLB) and the independent fake (fakepve): the last step, below. A
# function, so that `ONLY_PYTHON=1` runs it alone (`cargo xtask test` does, beside the builds,
# since it mostly waits on PyPI) and `WITH_PYTHON=0` leaves it out.
python_venv() {
  venv="$ROOT/target/venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import proxlb' 2>/dev/null; then
    say "python venv with proxlb==2.3.0 fakepve"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check proxlb==2.3.0 fakepve
  fi
  # The API fuzzer of tests/e2e/tests/integration/schemathesis.rs (≈ 15 s to install from PyPI).
  if ! "$venv/bin/st" --version 2>/dev/null | grep -q "4.32.5"; then
    say "schemathesis==4.32.5 into target/venv"
    "$venv/bin/pip" install -q --disable-pip-version-check schemathesis==4.32.5
  fi
}
if [ "${ONLY_PYTHON:-0}" = 1 ]; then
  python_venv
  exit 0
fi

# 1. Debian packages --------------------------------------------------------------------------
want=(rustc-web cargo-web rust-web-src chromium chromium-driver python3-venv openssl
      debhelper dpkg-dev fakeroot lintian wrk
      curl)  # curl: the e2e maintenance test's stand-in ha-manager calls the simulator with it
# The machine image ships Node.js with npm; only without it do we take Debian's.
command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if dpkg-query -W -f='${Status}' binaryen 2>/dev/null | grep -q 'install ok installed'; then
  say "removing Debian binaryen (its wasm-opt 108 breaks current Rust output)"
  apt-get remove -y -qq binaryen >/dev/null
fi

# 2. /opt/rust-web/bin: Debian cargo/rustc plus rustup's rust-lld, first on PATH for wasm builds --
sysroot="$("$RUSTUP_BIN/rustc" --print sysroot)"
lld="$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
[ -x "$lld" ] || { echo "setup: rust-lld not found at $lld (is rustup's toolchain complete?)" >&2; exit 1; }
mkdir -p "$WEB_BIN"
ln -sfn /usr/bin/cargo "$WEB_BIN/cargo"
ln -sfn /usr/bin/rustc "$WEB_BIN/rustc"
ln -sfn /usr/bin/rustdoc "$WEB_BIN/rustdoc"
ln -sfn "$lld" "$WEB_BIN/rust-lld"

# 3. cargo-installed tools, only when absent or at another version ------------------------------
has() { [ -x "$RUSTUP_BIN/$1" ] && "$RUSTUP_BIN/$1" --version 2>/dev/null | grep -qF "$2"; }
install_crate() {
  say "cargo install $*  (one-time, several minutes)"
  # Outside the project so its .cargo/config.toml does not apply; plain rustup env.
  ( cd /tmp && env -u RUSTC -u CARGO -u RUSTC_BOOTSTRAP -u CARGO_TARGET_DIR PATH="$RUSTUP_BIN:$PATH" \
      "$RUSTUP_BIN/cargo" install --quiet "$@" )
}
# trunk and wasm-bindgen-cli do little work per build (trunk drives cargo; wasm-bindgen rewrites a
# 2 MB module), but their release profiles ask for fat LTO and one codegen unit: on 2 cores that
# made their one-time install 37 min of a fresh machine's first test run. A plainer optimized
# build of them is enough (the profile variables override the crates' own, only for these two).
install_tool() {
  CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
    CARGO_PROFILE_RELEASE_DEBUG=false install_crate "$@"
}
has trunk "trunk $TRUNK_VERSION" || install_tool trunk --version "$TRUNK_VERSION" --locked
if [ -n "$WASM_BINDGEN_VERSION" ]; then
  # --locked fails: the crate's lockfile pins a webpki-roots the registry no longer has.
  has wasm-bindgen "wasm-bindgen $WASM_BINDGEN_VERSION" \
    || install_tool wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi
# The test runner (`cargo xtask test`). Machines of this kind ship it in /usr/local/bin; anywhere
# else it comes from crates.io once.
if ! "$RUSTUP_BIN/cargo" nextest --version >/dev/null 2>&1; then
  install_tool cargo-nextest --locked
fi
if [ "${WITH_WASM_OPT:-0}" = 1 ]; then
  has wasm-opt "version_116" || install_crate wasm-opt --version "$WASM_OPT_VERSION" --locked
fi

# 4. Python venv ------------------------------------------------------------------------------
if [ "${WITH_PYTHON:-1}" = 1 ]; then
  python_venv
fi
say "ready"
