#!/usr/bin/env bash
# debian/build.sh: build the pve-rebalancer .deb into target/deb/ and lintian-check it.
#
#   debian/build.sh            # from anywhere; needs frontend/dist (cargo xtask frontend)
#   PANEL_DIST=DIR debian/build.sh   # use another built panel (e.g. a stand-in for tests)
#   LINTIAN=0 debian/build.sh        # skip lintian
#   DEB_PREBUILT_BINARY=FILE debian/build.sh  # package FILE instead of a release build
#                                    (the test run packages its debug build: `cargo xtask test`)
#
# Idempotent: every run rebuilds the package (cargo itself is a no-op when nothing
# changed, in target/deb-cargo) and replaces the files in target/deb/. Installs
# debhelper, dpkg-dev, fakeroot and lintian with apt if they are missing (needs root).
# Fails if lintian reports an error or a warning.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=$root/target/deb
export PANEL_DIST=${PANEL_DIST:-frontend/dist}

say() { echo "[deb] $*" >&2; }
die() {
    echo "[deb] error: $*" >&2
    exit 1
}

# --- tools ---------------------------------------------------------------------------
missing=()
for p in debhelper dpkg-dev fakeroot lintian; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    die "cargo not found (run \`cargo xtask setup\` or install rustup)"
fi

# --- inputs --------------------------------------------------------------------------
[ -f "$PANEL_DIST/frontend_bg.wasm" ] ||
    die "$PANEL_DIST/frontend_bg.wasm is missing: build the panel first with \`cargo xtask frontend\`"

source_name=$(dpkg-parsechangelog -S Source)
deb_version=$(dpkg-parsechangelog -S Version)
cargo_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ "${deb_version%%-*}" = "$cargo_version" ] ||
    die "debian/changelog is at $deb_version but the workspace is at $cargo_version: add a changelog entry (dch -v $cargo_version)"
arch=$(dpkg-architecture -qDEB_HOST_ARCH)

# --- build ---------------------------------------------------------------------------
# dpkg-buildpackage writes its results next to the source tree (..); move ours to
# target/deb/ afterwards. Remove stale results of this version first.
parent=$(dirname "$root")
results() {
    ls -d "$1/${source_name}_${deb_version}_${arch}".{deb,buildinfo,changes} \
        "$1/${source_name}-dbgsym_${deb_version}_${arch}".{deb,ddeb} 2>/dev/null || true
}
results "$parent" | xargs -r rm -f --
say "dpkg-buildpackage -b -us -uc (PANEL_DIST=$PANEL_DIST)"
started=$SECONDS
dpkg-buildpackage -b -us -uc
mkdir -p "$out"
results "$out" | xargs -r rm -f --
results "$parent" | xargs -r mv -f -t "$out" --
deb=$out/${source_name}_${deb_version}_${arch}.deb
[ -f "$deb" ] || die "dpkg-buildpackage did not produce $(basename "$deb")"
# Leave the tree as clean as before (debian/pve-rebalancer/, debian/files, ...).
debian/rules clean >/dev/null
say "built in $((SECONDS - started)) s: $deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\|Installed-Size\):/  \1:/p' >&2

# --- lintian -------------------------------------------------------------------------
if [ "${LINTIAN:-1}" != 0 ]; then
    say "lintian $(basename "$deb")"
    # --fail-on: errors and warnings fail the build; info/pedantic tags are shown.
    lintian --display-info --fail-on error,warning "$deb" >&2 || die "lintian found problems"
    say "lintian: clean"
fi
echo "$deb"
