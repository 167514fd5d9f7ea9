#!/usr/bin/env bash
# tests/fresh-machine/run.sh: rehearse the README's two commands on a fresh machine of this kind
# (issue 19: "a fresh machine, nothing installed: both README commands work; total <= 30 min").
#
#   nice -n 5 tests/fresh-machine/run.sh          # as root; ~30 min, a few GB under /var/tmp
#
# A throwaway root: an overlay whose lower layer is this machine's `/` (read-only below it) and
# whose upper layer is a scratch folder, in private pid/mount/uts/ipc namespaces (the network
# is the host's: setup needs the package registries). In it the project's own installs are
# taken away again, so that it looks as a new machine of this kind does (tests/fresh-machine/
# README.md says what that is and what still differs): the Debian packages xtask/setup.sh
# installs that the machine image lacks are purged (with what apt pulled in for them), the
# cargo-installed tools, /opt/rust-web, cargo's registry and git caches and npm's cache are
# removed. Then a clone of the committed tree, alone in an otherwise empty /work, runs
#   cargo xtask test    (must pass)
#   cargo xtask demo    (until it prints the panel's URL; the panel page and /api/v1/health are
#                        fetched from it over loopback; then Ctrl-C, as a user stops it)
# each timed and bounded, and a summary prints each step's time, the xtask stage table, the
# total and pass/fail. Nothing reaches this machine: every mount is in the container's mount
# namespace, every write in the scratch folder, which is removed at the end.
#
# Settings (environment):
#   FRESH_COMMIT=REV        what to clone (default: HEAD of this work tree; commit first)
#   FRESH_STOP_AFTER=STEP   stop early: purge | clone | setup | panel | test (default: run all)
#   FRESH_SCRATCH=DIR       parent of the scratch folder (default /var/tmp)
#   FRESH_LOG_DIR=DIR       logs and summary (default target/fresh-machine/<UTC time>)
#   FRESH_TEST_TIMEOUT=S    bound on `cargo xtask test` (default 4800)
#   FRESH_DEMO_TIMEOUT=S    bound on `cargo xtask demo` printing its URL (default 1200)
#   FRESH_DEMO_PORT=N       the demo's port (default 8017, or a free one near 18017 when taken:
#                           the container shares this machine's network)
#   FRESH_TIMEOUT=S         bound on everything (default 7200)
#   FRESH_KEEP=1            keep the scratch folder (the overlay's upper layer, the clone)
#
# Exits 0 when every step that ran passed. Not part of `cargo xtask test`.
set -euo pipefail

# The Debian packages xtask/setup.sh installs that a new machine of this kind does not have.
# The others on its list (python3-venv, openssl, dpkg-dev, fakeroot, curl) and Node.js with
# npm are in the machine image (their first install in /var/log/dpkg.log predates the
# project's first setup run).
ABSENT_DEBS=(rustc-web cargo-web rust-web-src chromium chromium-driver debhelper lintian wrk
    # Chromium's, which `apt-get autoremove` keeps after it: libgtk-3-0 also satisfies an
    # alternative dependency of the image's openjdk-17-jre ("libgtk2.0-0 | libgtk-3-0").
    libgtk-3-0 libgtk-3-common libcolord2 libepoxy0 libwayland-cursor0 libwayland-egl1)
# What setup.sh and the tests leave in $HOME, and /opt/rust-web.
ABSENT_PATHS=(.cargo/bin/trunk .cargo/bin/wasm-bindgen .cargo/bin/wasm-bindgen-test-runner
    .cargo/bin/wasm2es6js .cargo/bin/wasm-opt .cargo/.crates.toml .cargo/.crates2.json
    .cargo/registry .cargo/git .cargo/.global-cache .cargo/.package-cache
    .cargo/.package-cache-mutate .npm/_cacache .cache/dconf .config/chromium .debug)

say() { printf '[fresh] %s\n' "$*"; }
die() {
    printf '[fresh] error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Inside the container (PID 1 of the new pid namespace, in its own mount namespace).
# ---------------------------------------------------------------------------------------------
enter_root() {
    local s=$FRESH_SCRATCH_DIR r=$FRESH_SCRATCH_DIR/root
    mount --make-rprivate /
    mkdir -p "$s/upper" "$s/ovl-work" "$r" "$s/tmp" "$s/vartmp" "$s/work"
    chmod 1777 "$s/tmp" "$s/vartmp"
    # The upper layer lies inside the lower one (`/`); the kernel allows it with a warning
    # ("overlapping lowerdir path"). /var/tmp is mounted over below, so the container never
    # looks at the upper layer through the lower one.
    mount -t overlay pvrb-fresh -o "lowerdir=/,upperdir=$s/upper,workdir=$s/ovl-work" "$r"
    mount -t proc proc "$r/proc"
    mount --rbind /sys "$r/sys" # the cgroup2 hierarchy: the package test makes a cgroup
    mount --rbind /dev "$r/dev"
    mount --bind "$s/tmp" "$r/tmp"
    mount --bind "$s/vartmp" "$r/var/tmp"
    mount --bind "$s/work" "$r/work" # the clone, with nothing beside it
    mkdir -p "$r/mnt/fresh-origin.git" "$r/mnt/fresh-log"
    mount --bind "$FRESH_ORIGIN" "$r/mnt/fresh-origin.git"
    mount -o remount,bind,ro "$r/mnt/fresh-origin.git"
    mount --bind "$FRESH_LOG_DIR" "$r/mnt/fresh-log"
    cd "$r"
    mkdir -p .oldroot
    pivot_root . .oldroot
    cd /
    umount -l /.oldroot
    rmdir /.oldroot
    hostname fresh-machine
}

# Purges ABSENT_DEBS and what apt installed only for them: the packages `apt-get autoremove`
# would take after the purge but not before it.
autoremovable() { apt-get -s autoremove 2>/dev/null | sed -n 's/^Remv \([^ ]*\).*/\1/p' | sort; }
take_away_installs() {
    local p installed=() before after orphans
    for p in "${ABSENT_DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && installed+=("$p")
    done
    before=$(autoremovable)
    if [ ${#installed[@]} -gt 0 ]; then
        say "purging ${installed[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${installed[@]}" >/mnt/fresh-log/purge.log 2>&1
    fi
    after=$(autoremovable)
    mapfile -t orphans < <(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d')
    if [ ${#orphans[@]} -gt 0 ]; then
        say "purging ${#orphans[@]} packages apt installed for them"
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${orphans[@]}" >>/mnt/fresh-log/purge.log 2>&1
    fi
    for p in "${ABSENT_PATHS[@]}"; do rm -rf "${HOME:?}/$p"; done
    rm -rf /opt/rust-web
    # What is left, for the log: none of these may be there.
    for p in "${ABSENT_DEBS[@]}"; do
        ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            die "$p is still installed in the fresh root"
    done
    for p in trunk wasm-bindgen wasm-opt; do
        [ ! -e "$HOME/.cargo/bin/$p" ] || die "$HOME/.cargo/bin/$p is still there"
    done
    [ ! -e /opt/rust-web ] || die "/opt/rust-web is still there"
    say "fresh root: none of ${ABSENT_DEBS[*]}; ~/.cargo/bin has $(cd "$HOME/.cargo/bin" && echo ./*)" \
        "; no /opt/rust-web, ~/.cargo/registry, ~/.cargo/git, ~/.npm/_cacache"
}

results=()
failed=0
t_all=
readme_secs=0 # the README's commands alone: test and demo
# step NAME TIMEOUT CMD...: runs CMD in the clone, output to the terminal and NAME.log, timed.
step() {
    local name=$1 limit=$2 t0 rc
    shift 2
    say "step $name: $*"
    t0=$(date +%s)
    set +e
    (cd /work/pve-rebalancer && timeout --kill-after=30 "$limit" "$@") 2>&1 | tee "/mnt/fresh-log/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    record "$name" $(($(date +%s) - t0)) "$rc"
    return "$rc"
}
record() { # NAME SECONDS RC
    local verdict=ok
    [ "$3" = 0 ] || { verdict="FAIL (exit $3)"; failed=$((failed + 1)); }
    results+=("$(printf '%-22s %6d s  %s' "$1" "$2" "$verdict")")
    case $1 in test | demo) readme_secs=$((readme_secs + $2)) ;; esac
    say "step $1: $verdict after $2 s"
}

# The demo as a user runs it: started, its URL awaited, the panel used, then Ctrl-C.
demo() {
    local t0 pid url='' rc=0 waited page health
    local log=/mnt/fresh-log/demo.log
    say "step demo: cargo xtask demo --port $FRESH_DEMO_PORT"
    t0=$(date +%s)
    (cd /work/pve-rebalancer && exec setsid cargo xtask demo --port "$FRESH_DEMO_PORT") </dev/null >"$log" 2>&1 &
    pid=$!
    while [ $(($(date +%s) - t0)) -lt "$FRESH_DEMO_TIMEOUT" ]; do
        url=$(sed -n 's/^ *Rebalancing panel: *\([^ ]*\).*/\1/p' "$log" | head -n 1)
        [ -z "$url" ] || break
        kill -0 "$pid" 2>/dev/null || break
        sleep 2
    done
    waited=$(($(date +%s) - t0))
    if [ -z "$url" ]; then
        say "the demo printed no URL within $waited s (limit $FRESH_DEMO_TIMEOUT s); its log:"
        tail -n 40 "$log"
        rc=1
    else
        record "demo: URL printed" "$waited" 0
        url=${url%/}
        page=$(curl -sS --fail --max-time 30 -k "$url/" 2>&1) || rc=1
        if [ "$rc" = 0 ] && grep -qi '<html' <<<"$page" && grep -q 'wasm\|frontend' <<<"$page"; then
            say "GET $url/: the panel page ($(wc -c <<<"$page") bytes)"
        else
            say "GET $url/ failed or is not the panel: $(head -c 300 <<<"$page")"
            rc=1
        fi
        health=$(curl -sS --fail --max-time 30 -k "$url/api/v1/health" 2>&1) || rc=1
        if grep -q '"status":"ok"' <<<"$health"; then
            say "GET $url/api/v1/health: $health"
        else
            say "GET $url/api/v1/health failed: $(head -c 300 <<<"$health")"
            rc=1
        fi
    fi
    # Ctrl-C: SIGINT to the demo's process group (cargo, xtask, the simulator, the backend).
    kill -INT -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
        say "the demo did not stop within 30 s of Ctrl-C"
        kill -KILL -- "-$pid" 2>/dev/null || true
        rc=1
    fi
    wait "$pid" 2>/dev/null || true
    sed 's/^/  demo| /' "$log" | tail -n 12
    record demo $(($(date +%s) - t0)) "$rc"
}

summary() {
    local total=$(($(date +%s) - t_all))
    {
        echo "[fresh] ==== summary (commit $FRESH_COMMIT) ===="
        printf '[fresh]   %s\n' "${results[@]}"
        if [ -f /mnt/fresh-log/test.log ]; then
            # Each stage's line as it ended; on a timeout, the command it was in.
            echo "[fresh]   cargo xtask test's stages that ended:"
            grep -E '^\[xtask\] stage .*[0-9] s ' /mnt/fresh-log/test.log | sed 's/^\[xtask\] stage/[fresh]    /' || true
            grep -q '^\[xtask\] stage times' /mnt/fresh-log/test.log ||
                echo "[fresh]   cut short in: $(grep '^\[xtask\] ' /mnt/fresh-log/test.log |
                    grep -Ev '^\[xtask\] (stage|disk)' | tail -n 1 | sed 's/^\[xtask\] //; s/.*PATH="[^"]*" *//' | cut -c1-160)"
        fi
        printf '[fresh]   %-22s %6d s  (%d min %d s)\n' "README commands" "$readme_secs" \
            $((readme_secs / 60)) $((readme_secs % 60))
        printf '[fresh]   %-22s %6d s  (%d min %d s, with purge and clone)\n' "rehearsal" "$total" \
            $((total / 60)) $((total % 60))
        echo "[fresh]   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores, shared)"
        [ ! -d /work/pve-rebalancer/target ] ||
            echo "[fresh]   target/ at the end: $(du -sh /work/pve-rebalancer/target 2>/dev/null | cut -f1)"
        echo "fresh-machine: $((${#results[@]} - failed)) passed, $failed failed"
    } | tee /mnt/fresh-log/summary.txt
}

inside() {
    enter_root
    t_all=$(date +%s)
    trap summary EXIT
    local t0
    t0=$(date +%s)
    take_away_installs
    record purge $(($(date +%s) - t0)) 0
    [ "$FRESH_STOP_AFTER" != purge ] || return 0

    t0=$(date +%s)
    # As from a remote: objects come in a pack, nothing is hard-linked to the origin.
    git clone -q --no-local /mnt/fresh-origin.git /work/pve-rebalancer
    git -C /work/pve-rebalancer checkout -q --detach "$FRESH_COMMIT"
    say "clone of $FRESH_COMMIT in /work/pve-rebalancer; /work holds: $(ls -A /work)"
    record clone $(($(date +%s) - t0)) 0
    [ "$FRESH_STOP_AFTER" != clone ] || return 0

    case $FRESH_STOP_AFTER in
    setup)
        step setup "$FRESH_TEST_TIMEOUT" cargo xtask setup || true
        return 0
        ;;
    panel)
        if step setup "$FRESH_TEST_TIMEOUT" cargo xtask setup; then
            step panel "$FRESH_TEST_TIMEOUT" cargo xtask frontend || true
        fi
        return 0
        ;;
    esac
    # The README's two commands.
    say "load average before them: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores, shared)"
    step test "$FRESH_TEST_TIMEOUT" cargo xtask test || true
    [ "$FRESH_STOP_AFTER" != test ] || return 0
    demo
}

# ---------------------------------------------------------------------------------------------
# On the machine: checks, the scratch folder, the container, cleanup.
# ---------------------------------------------------------------------------------------------
free_port() {
    local p
    for p in 8017 $(seq 18017 18099); do
        [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] || {
            echo "$p"
            return
        }
    done
    die "no free port for the demo"
}

main() {
    local here root scratch_parent rc
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    root=$(cd "$here/../.." && pwd)
    [ "$(id -u)" = 0 ] || die "needs root (namespaces, mounts, apt in the container)"
    local t
    for t in unshare pivot_root timeout git ss curl setsid; do
        command -v "$t" >/dev/null || die "$t is not installed"
    done
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || die "the kernel has no overlayfs"
    case ${FRESH_STOP_AFTER:=} in '' | purge | clone | setup | panel | test) ;; *) die "FRESH_STOP_AFTER=$FRESH_STOP_AFTER: purge, clone, setup, panel or test" ;; esac

    export FRESH_STOP_AFTER
    export FRESH_COMMIT=${FRESH_COMMIT:-$(git -C "$root" rev-parse HEAD)}
    FRESH_COMMIT=$(git -C "$root" rev-parse --verify "$FRESH_COMMIT^{commit}")
    export FRESH_ORIGIN
    FRESH_ORIGIN=$(git -C "$root" rev-parse --path-format=absolute --git-common-dir)
    [ -z "$(git -C "$root" status --porcelain --untracked-files=no)" ] ||
        say "note: the work tree has uncommitted changes; the rehearsal clones commit $FRESH_COMMIT"
    export FRESH_TEST_TIMEOUT=${FRESH_TEST_TIMEOUT:-4800} FRESH_DEMO_TIMEOUT=${FRESH_DEMO_TIMEOUT:-1200}
    export FRESH_DEMO_PORT=${FRESH_DEMO_PORT:-$(free_port)}
    export FRESH_LOG_DIR=${FRESH_LOG_DIR:-$root/target/fresh-machine/$(date -u +%Y%m%dT%H%M%SZ)}
    mkdir -p "$FRESH_LOG_DIR"
    FRESH_LOG_DIR=$(cd "$FRESH_LOG_DIR" && pwd)
    scratch_parent=${FRESH_SCRATCH:-/var/tmp}
    local avail_gb
    avail_gb=$(($(df -Pk "$scratch_parent" | awk 'NR == 2 {print $4}') / 1048576))
    [ "$avail_gb" -ge 15 ] || die "$scratch_parent has $avail_gb GB free; the rehearsal needs about 15"
    export FRESH_SCRATCH_DIR
    FRESH_SCRATCH_DIR=$(mktemp -d "$scratch_parent/pvrb-fresh.XXXXXX")

    cpid=
    cleanup() {
        [ -z "$cpid" ] || { kill -TERM "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null; }
        case $FRESH_SCRATCH_DIR in
        */pvrb-fresh.??????)
            if [ "${FRESH_KEEP:-0}" = 1 ]; then
                say "kept $FRESH_SCRATCH_DIR (remove it with rm -rf)"
            else
                rm -rf "$FRESH_SCRATCH_DIR"
            fi
            ;;
        esac
    }
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    say "commit $FRESH_COMMIT from $FRESH_ORIGIN; scratch $FRESH_SCRATCH_DIR ($avail_gb GB free);" \
        "logs $FRESH_LOG_DIR; demo port $FRESH_DEMO_PORT${FRESH_STOP_AFTER:+; stop after $FRESH_STOP_AFTER}"
    # --kill-child: if unshare goes, the container's PID 1 and with it everything in it goes.
    set +e
    timeout --kill-after=30 "${FRESH_TIMEOUT:-7200}" \
        unshare --fork --kill-child --pid --mount --uts --ipc --propagation private \
        bash "$here/run.sh" --inside > >(tee "$FRESH_LOG_DIR/run.log") 2>&1 &
    cpid=$!
    wait "$cpid"
    rc=$?
    set -e
    cpid=
    grep -q '^fresh-machine: [0-9]* passed, 0 failed$' "$FRESH_LOG_DIR/summary.txt" 2>/dev/null || rc=1
    return "$rc"
}

if [ "${1:-}" = --inside ]; then
    inside
else
    main "$@"
fi
