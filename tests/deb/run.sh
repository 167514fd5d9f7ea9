#!/usr/bin/env bash
# tests/deb/run.sh: install the built pve-rebalancer .deb into a throwaway dpkg root and
# check the maintainer scripts, the trigger and the unit file.
#
#   tests/deb/run.sh [PATH.deb]     # default: the newest target/deb/pve-rebalancer_*.deb
#                                   # (build it with debian/build.sh)
#
# How: `dpkg --root=DIR --force-script-chrootless` unpacks into DIR with DIR's own dpkg
# database and runs the maintainer scripts on this machine with DPKG_ROOT=DIR (our
# scripts and debhelper's honour it). pve-manager is a stand-in .deb built here that
# ships only our own small index.html.tpl and reacts to the pve-api-updates trigger, so
# the file trigger on the template is exercised by real dpkg. systemctl and
# deb-systemd-invoke are replaced by logging stubs on PATH: nothing touches the real
# system's /usr/share/pve-manager or its services. Every dpkg call has a timeout.
#
# Section 8 then starts the installed service under its sandbox with a real systemd as PID 1
# of a throwaway container (needs root, cgroup2 and namespaces; prints `note - NOT RUN: why`
# where that is impossible, or fails with PVE_REBALANCER_DEB_BOOT=require). It uses
# target/debug/pve-sim (PVE_SIM=PATH for another; built with cargo if missing).
#
# Prints `deb: N passed, M failed` last; exits 1 if anything failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deb=${1:-$(ls -t "$root"/target/deb/pve-rebalancer_*.deb 2>/dev/null | head -n 1)}
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    echo "deb: no package found; build it first with debian/build.sh" >&2
    echo "deb: 0 passed, 1 failed"
    exit 1
fi
deb=$(readlink -f "$deb")
for tool in dpkg dpkg-deb dpkg-query timeout cmp; do
    command -v "$tool" >/dev/null || {
        echo "deb: $tool is missing" >&2
        echo "deb: 0 passed, 1 failed"
        exit 1
    }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/pve-rebalancer-deb-test.XXXXXX")
trap 'rm -rf "$work"' EXIT # extended by section 8
passed=0
failed=0
log=$work/log

ok() {
    passed=$((passed + 1))
    echo "ok   - $1"
}
not_ok() {
    failed=$((failed + 1))
    echo "FAIL - $1"
    shift
    for line in "$@"; do echo "       $line"; done
}
# check DESCRIPTION COMMAND...: passes if COMMAND succeeds.
check() {
    local desc=$1
    shift
    if "$@" >"$work/check.out" 2>&1; then ok "$desc"; else not_ok "$desc" "$(tail -n "${CHECK_TAIL:-5}" "$work/check.out")"; fi
}

# --- stubs: no service manager calls reach the real system ---------------------------
stubs=$work/stubs
mkdir -p "$stubs"
for cmd in systemctl deb-systemd-invoke; do
    printf '#!/bin/sh\necho "%s $*" >>"%s"\nexit 0\n' "$cmd" "$work/service-calls.log" >"$stubs/$cmd"
    chmod +x "$stubs/$cmd"
done
export PATH="$stubs:$PATH"
unset PVE_INDEX_TEMPLATE

# --- a dpkg root ---------------------------------------------------------------------
new_root() {
    local r=$1
    mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates" "$r/var/lib/dpkg/triggers" "$r/var/log"
    : >"$r/var/lib/dpkg/status"
    : >"$r/var/lib/dpkg/available"
    [ ! -s "$work/deps.list" ] || xargs -a "$work/deps.list" -d '\n' \
        timeout 120 dpkg --root="$r" --log="$work/dpkg.log" -i >>"$log" 2>&1
}
# rdpkg ROOT ARGS...: dpkg on ROOT, maintainer scripts run here with DPKG_ROOT=ROOT.
rdpkg() {
    local r=$1
    shift
    timeout 120 dpkg --root="$r" --log="$work/dpkg.log" --force-script-chrootless \
        --force-confdef --force-confold "$@" >>"$log" 2>&1
}
status_of() { # ROOT PACKAGE
    dpkg-query --admindir="$1/var/lib/dpkg" -W -f='${Status}' "$2" 2>/dev/null
}

# --- the stand-in template and pve-manager package -----------------------------------
cat >"$work/index.html.tpl" <<'EOF'
<!DOCTYPE html>
<html>
  <head>
    <!-- stand-in written for the pve-rebalancer package test -->
    <title>[% nodename %] - stand-in</title>
    <script type="text/javascript" src="/pve2/ext6/ext-all.js?ver=7.0.0"></script>
    <script type="text/javascript" src="/proxmoxlib.js?ver=[% wtversion %]"></script>
    <script type="text/javascript" src="/pve2/js/pvemanagerlib.js?ver=[% version %]"></script>
    <script type="text/javascript">
      Ext.onReady(function() { Ext.create('PVE.StdWorkspace'); });
    </script>
  </head>
  <body></body>
</html>
EOF

# fake_pve_manager VERSION: builds $work/pve-manager_VERSION_all.deb
fake_pve_manager() {
    local v=$1 d=$work/pm-$1
    mkdir -p "$d/DEBIAN" "$d/usr/share/pve-manager/js"
    cp "$work/index.html.tpl" "$d/usr/share/pve-manager/index.html.tpl"
    cat >"$d/DEBIAN/control" <<EOF
Package: pve-manager
Version: $v
Architecture: all
Maintainer: pve-rebalancer package test <test@invalid>
Description: stand-in for pve-manager (package test only)
 Ships only a small index.html.tpl and listens to the pve-api-updates trigger.
EOF
    echo 'interest-noawait pve-api-updates' >"$d/DEBIAN/triggers"
    cat >"$d/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
# The real pve-manager reloads pveproxy here; the stand-in records the trigger.
if [ "$1" = triggered ]; then echo "$2" >>"${DPKG_ROOT:-}/pveproxy-reloads.log"; fi
exit 0
EOF
    chmod 0755 "$d/DEBIAN/postinst"
    dpkg-deb --root-owner-group -Zgzip --build "$d" "$work/pve-manager_${v}_all.deb" >>"$log" 2>&1
}
# Empty stand-ins for our package's dependencies (libc6, ...), so that dpkg can be run
# without --force-depends: with unsatisfied dependencies dpkg defers trigger processing
# and gives up with "triggers looping", which is not what a real system does.
fake_deps() {
    local name d debs=()
    for name in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/[(:].*//; s/ //g'); do
        d=$work/dep-$name
        mkdir -p "$d/DEBIAN"
        printf 'Package: %s\nVersion: 9999\nArchitecture: %s\nMaintainer: package test <test@invalid>\nDescription: stand-in\n stand-in (package test only)\n' \
            "$name" "$(dpkg-deb -f "$deb" Architecture)" >"$d/DEBIAN/control"
        dpkg-deb --root-owner-group -Zgzip --build "$d" "$work/dep-$name.deb" >>"$log" 2>&1 || return 1
        debs+=("$work/dep-$name.deb")
    done
    printf '%s\n' "${debs[@]}" >"$work/deps.list"
}
fake_deps && fake_pve_manager 9.9.0-1 && fake_pve_manager 9.9.1-1 || {
    echo "deb: could not build the stand-in pve-manager" >&2
    cat "$log" >&2
    echo "deb: 0 passed, 1 failed"
    exit 1
}

LINE_SRC='src="/pve2/js/pve-rebalancer/pve-rebalancer.js"'
R=$work/root
TPL=$R/usr/share/pve-manager/index.html.tpl
ASSETS=$R/usr/share/pve-manager/js/pve-rebalancer
lines() { grep -c -F "$LINE_SRC" "$TPL" 2>/dev/null || true; }
expect_lines() { # N
    local n
    n=$(lines)
    [ "$n" = "$1" ] || {
        echo "expected $1 script line(s) in the template, found $n"
        return 1
    }
}
expect_status() { # PACKAGE STATUS
    local s
    s=$(status_of "$R" "$1")
    [ "$s" = "$2" ] || {
        echo "status of $1 is '$s', expected '$2'"
        return 1
    }
}

echo "# package: $deb"
new_root "$R"

# 1. pve-manager, then our package
check "stand-in pve-manager installs" rdpkg "$R" -i "$work/pve-manager_9.9.0-1_all.deb"
: >"$R/pveproxy-reloads.log"
check "pve-rebalancer installs (dpkg -i)" rdpkg "$R" -i "$deb"
check "package state is 'install ok installed'" expect_status pve-rebalancer "install ok installed"
check "binary installed and executable" test -x "$R/usr/bin/pve-rebalancer"
check "panel assets installed" test -s "$ASSETS/index.html" -a -s "$ASSETS/frontend.js" \
    -a -s "$ASSETS/frontend_bg.wasm" -a -s "$ASSETS/pve-rebalancer.js"
check "what-if worker installed beside the panel" test -s "$ASSETS/whatif_loader.js" \
    -a -s "$ASSETS/whatif.js" -a -s "$ASSETS/whatif_bg.wasm"
check "integration script installed and executable" \
    test -x "$R/usr/share/pve-rebalancer/pve-integration-install.sh"
check "env file has mode 0600" bash -c "[ \"\$(stat -c %a '$R/etc/pve-rebalancer/pve-rebalancer.env')\" = 600 ]"
check "env file and proxlb.yaml are conffiles" bash -c "
    c=\$(dpkg-query --admindir='$R/var/lib/dpkg' -W -f='\${Conffiles}' pve-rebalancer)
    grep -q ' /etc/pve-rebalancer/pve-rebalancer.env ' <<<\"\$c\" &&
    grep -q ' /etc/pve-rebalancer/proxlb.yaml ' <<<\"\$c\""
check "configure adds the script line once" expect_lines 1
check "the line follows the pvemanagerlib.js line" bash -c "
    grep -A1 -F 'pvemanagerlib.js' '$TPL' | tail -n 1 | grep -q -F '$LINE_SRC'"
check "pve-api-updates trigger fired (pveproxy reload requested)" \
    grep -q -x 'pve-api-updates' "$R/pveproxy-reloads.log"
check "unit enabled in the root (multi-user.target.wants)" \
    test -L "$R/etc/systemd/system/multi-user.target.wants/pve-rebalancer.service"

# 2. configure again: reinstall, and the postinst run by hand
check "reinstall of the same version succeeds" rdpkg "$R" -i "$deb"
check "a second configure leaves one line" expect_lines 1
check "postinst configure run again directly" env DPKG_ROOT="$R" \
    sh "$R/var/lib/dpkg/info/pve-rebalancer.postinst" configure 0.1.0
check "still one line after that" expect_lines 1

# 3. pve-manager upgrade: a fresh template without our line, then the trigger
# --no-triggers: stop after the unpack, to see the trigger pending.
check "stand-in pve-manager upgrade unpacks (dpkg --unpack --no-triggers)" \
    rdpkg "$R" --unpack --no-triggers "$work/pve-manager_9.9.1-1_all.deb"
check "the upgrade replaced the template (no line)" expect_lines 0
check "the template path activated our file trigger" \
    expect_status pve-rebalancer "install ok triggers-pending"
check "pending triggers processed (dpkg --triggers-only --pending)" \
    rdpkg "$R" --triggers-only --pending
check "the trigger put the line back exactly once" expect_lines 1
check "pve-rebalancer back to 'install ok installed'" expect_status pve-rebalancer "install ok installed"
check "pve-manager configures" rdpkg "$R" --configure --pending
check "still one line" expect_lines 1
check "pve-manager upgrade with dpkg -i in one go" rdpkg "$R" -i "$work/pve-manager_9.9.1-1_all.deb"
check "one line after that too" expect_lines 1

# 4. remove
mkdir -p "$R/var/lib/pve-rebalancer" && echo '{}' >"$R/var/lib/pve-rebalancer/state.json"
echo '# local' >"$R/etc/pve-rebalancer/local.conf"
check "pve-rebalancer removes (dpkg -r)" rdpkg "$R" -r pve-rebalancer
check "remove leaves the template byte-identical to the original" cmp "$work/index.html.tpl" "$TPL"
check "binary and assets gone" bash -c "[ ! -e '$R/usr/bin/pve-rebalancer' ] && [ ! -e '$ASSETS' ]"
check "remove keeps config and state" \
    test -f "$R/etc/pve-rebalancer/pve-rebalancer.env" -a -f "$R/var/lib/pve-rebalancer/state.json"
check "package state is 'deinstall ok config-files'" \
    expect_status pve-rebalancer "deinstall ok config-files"

# 5. purge
check "pve-rebalancer purges (dpkg -P)" rdpkg "$R" -P pve-rebalancer
check "purge removes /etc/pve-rebalancer" test ! -e "$R/etc/pve-rebalancer"
check "purge removes /var/lib/pve-rebalancer" test ! -e "$R/var/lib/pve-rebalancer"
check "purge removes the unit's enable symlink" \
    test ! -e "$R/etc/systemd/system/multi-user.target.wants/pve-rebalancer.service"
check "package unknown to dpkg after purge" bash -c "[ -z \"\$(dpkg-query --admindir='$R/var/lib/dpkg' -W -f='\${Status}' pve-rebalancer 2>/dev/null | grep -v not-installed)\" ]"
check "template still byte-identical after purge" cmp "$work/index.html.tpl" "$TPL"

# 6. no pve-manager at all
R2=$work/root-without-pve
new_root "$R2"
: >"$log.2"
check "installs without pve-manager" bash -c "
    timeout 120 dpkg --root='$R2' --log='$work/dpkg.log' --force-script-chrootless \
        -i '$deb' >'$log.2' 2>&1"
check "... and says it skipped the UI integration" grep -q "pve-manager is not installed" "$log.2"
check "... without creating a template" test ! -e "$R2/usr/share/pve-manager/index.html.tpl"
# pve-manager installed after us (e.g. in the same apt run, ordered the other way): the
# file trigger adds the line.
TPL2=$R2/usr/share/pve-manager/index.html.tpl
check "pve-manager installed afterwards: the trigger adds the line once" bash -c "
    timeout 120 dpkg --root='$R2' --log='$work/dpkg.log' --force-script-chrootless \
        -i '$work/pve-manager_9.9.0-1_all.deb' >>'$log.2' 2>&1 &&
    [ \"\$(grep -c -F '$LINE_SRC' '$TPL2')\" = 1 ]"
check "... and purging us restores its template byte for byte" bash -c "
    timeout 120 dpkg --root='$R2' --log='$work/dpkg.log' --force-script-chrootless \
        -P pve-rebalancer >>'$log.2' 2>&1 && cmp '$work/index.html.tpl' '$TPL2'"

# 7. the unit file
unit=$work/unit
mkdir -p "$unit"
dpkg-deb -x "$deb" "$unit" 2>>"$log"
unitfile=$(find "$unit" -name pve-rebalancer.service -path '*/systemd/system/*' | head -n 1)
check "unit file shipped in the package" test -n "$unitfile"
check "unit has the sandboxing options" bash -c "
    for o in 'ProtectSystem=strict' 'ProtectHome=yes' 'NoNewPrivileges=yes' 'PrivateTmp=yes' \
             'StateDirectory=pve-rebalancer' 'ReadWritePaths=/var/lib/pve-rebalancer' \
             'PrivateMounts=yes' 'DevicePolicy=closed' 'ProtectKernelTunables=yes' \
             'ProtectKernelModules=yes' 'ProtectKernelLogs=yes' 'ProtectControlGroups=yes' \
             'ProtectClock=yes' 'ProtectHostname=yes' 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
             'RestrictNamespaces=yes' 'RestrictSUIDSGID=yes' 'RestrictRealtime=yes' \
             'LockPersonality=yes' 'MemoryDenyWriteExecute=yes' 'SystemCallArchitectures=native' \
             'SystemCallFilter=@system-service' 'SystemCallFilter=~@privileged' 'UMask=0027' \
             'After=.*pveproxy.service' 'Restart=on-failure' \
             'EnvironmentFile=/etc/pve-rebalancer/pve-rebalancer.env' \
             'ExecStart=/usr/bin/pve-rebalancer serve '; do
        grep -q -x \"\$o.*\" '$unitfile' || { echo \"missing: \$o\"; exit 1; }
    done
    # Exactly these lines: the few writable paths on pmxcfs, no capabilities at all.
    for o in 'ReadWritePaths=-/etc/pve/pve-rebalancer' 'ReadWritePaths=-/etc/pve/priv/lock' \
             'ReadWritePaths=-/etc/pve/ha' 'CapabilityBoundingSet=' 'AmbientCapabilities='; do
        grep -q -x -F \"\$o\" '$unitfile' || { echo \"missing: \$o\"; exit 1; }
    done"
if command -v systemd-analyze >/dev/null; then
    # verify resolves ExecStart=/ExecCondition= binaries and the default dependencies
    # (sysinit.target, ...), so run it with --root on the extracted package plus a copy
    # of this machine's unit directory and /bin/sh. It exits 0 even for bad settings
    # (only warnings), so any message about our unit also fails the check.
    mkdir -p "$unit/bin" "$unit/lib/systemd/system"
    cp -L /bin/sh "$unit/bin/sh"
    for d in /lib/systemd/system /usr/lib/systemd/system; do
        [ -d "$d" ] && cp -rn "$d/." "$unit/lib/systemd/system/" 2>/dev/null
    done
    check "systemd-analyze verify accepts the unit (no warnings)" bash -c "
        out=\$(timeout 60 systemd-analyze verify --man=no --root='$unit' \
            /lib/systemd/system/pve-rebalancer.service 2>&1); rc=\$?
        echo \"\$out\"
        [ \$rc = 0 ] && ! grep -q 'pve-rebalancer' <<<\"\$out\""
    # The exposure score (lower is better; 2.0 when recorded in README.install.md): a
    # directive dropped from the sandbox shows here before it reaches a node.
    check "systemd-analyze security: exposure at most 2.5" bash -c "
        score=\$(timeout 60 systemd-analyze security --offline=yes --root='$unit' \
            /lib/systemd/system/pve-rebalancer.service 2>&1 | sed -n 's/.*Overall exposure level for .*: \\([0-9.]*\\) .*/\\1/p')
        echo \"exposure \$score\"
        [ -n \"\$score\" ] && awk -v s=\"\$score\" 'BEGIN { exit !(s <= 2.5) }'"
    check "no write access to the rest of /etc/pve (ReadWritePaths=-/etc/pve gone)" \
        bash -c "! grep -q -x 'ReadWritePaths=-/etc/pve' '$unitfile'"
else
    echo "note - systemd-analyze is not installed: skipping the unit verification"
fi

# 8. the service under its sandbox, started by a real systemd
# The unit's directives only mean something once a service manager applies them: here the
# package is installed into a third root, that root is laid over this machine's `/` in a
# throwaway container (tests/deb/container-init.sh: private pid, mount, network, UTS, IPC and
# cgroup namespaces) whose PID 1 is this machine's systemd, and the installed unit is started
# with `systemctl start`, unchanged. Its environment is the shipped env file with
# credentials added, as the README tells an admin to do; PVE is the simulator (pve-sim) on
# 127.0.0.1:8006 in the container's own network namespace, so the shipped options
# (--pve-url https://127.0.0.1:8006 --pve-ca /etc/pve/pve-root-ca.pem --tls-pve-dir
# /etc/pve/local, --listen [::]:8017) are used as they are. /etc/pve is a plain directory
# laid out like pmxcfs (not pmxcfs). The service then plans and executes one migration.
boot_pid= # the container's `timeout`, parent of `unshare`, parent of the container's PID 1
sim_pid=
boot_cg=
children() { # PID: its first child's PID (the kernel's list ends with a space)
    local c=
    [ ! -r "/proc/$1/task/$1/children" ] || read -r c _ <"/proc/$1/task/$1/children"
    echo "$c"
}
ns1() { [ -z "$boot_pid" ] || children "$(children "$boot_pid")"; }
boot_cleanup() {
    [ -z "$sim_pid" ] || { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; }
    sim_pid=
    if [ -n "$boot_pid" ]; then
        # SIGRTMIN+4 is systemd's "poweroff"; killing PID 1 of the namespace ends all in it.
        local init
        init=$(ns1)
        [ -z "$init" ] || kill -s SIGRTMIN+4 "$init" 2>/dev/null
        for _ in $(seq 1 60); do kill -0 "$boot_pid" 2>/dev/null || break; sleep 0.5; done
        init=$(ns1)
        [ -z "$init" ] || kill -KILL "$init" 2>/dev/null
        wait "$boot_pid" 2>/dev/null
        boot_pid=
    fi
    if [ -n "$boot_cg" ] && [ -d "$boot_cg" ]; then
        for _ in $(seq 1 20); do
            find "$boot_cg" -depth -type d -exec rmdir {} \; 2>/dev/null
            [ -d "$boot_cg" ] || break
            sleep 0.5
        done
        [ ! -d "$boot_cg" ] || echo "deb: could not remove the test's cgroup $boot_cg" >&2
    fi
    boot_cg=
}
trap 'boot_cleanup; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# boot_unavailable: prints why the container cannot run here, if it cannot.
cg2=
boot_unavailable() {
    [ "$(id -u)" = 0 ] || { echo "not root (namespaces, mounts and cgroups need it)"; return; }
    [ -x /lib/systemd/systemd ] || { echo "/lib/systemd/systemd is not installed"; return; }
    local t
    for t in unshare nsenter pivot_root curl jq openssl tar; do
        command -v "$t" >/dev/null || { echo "$t is not installed"; return; }
    done
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
        { echo "the kernel has no overlayfs"; return; }
    if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        cg2=/sys/fs/cgroup
    elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
        cg2=/sys/fs/cgroup/unified
    else
        echo "no cgroup2 hierarchy mounted (/sys/fs/cgroup or /sys/fs/cgroup/unified)"
        return
    fi
    local err
    err=$(timeout 20 unshare --fork --pid --mount --net --uts --ipc --cgroup true 2>&1) ||
        { echo "cannot create namespaces: $err"; return; }
}

boot_unavailable >"$work/boot-unavailable" # not in a subshell: it sets cg2
reason=$(cat "$work/boot-unavailable")
if [ -n "$reason" ]; then
    if [ "${PVE_REBALANCER_DEB_BOOT:-}" = require ]; then
        not_ok "the service under its sandbox (PVE_REBALANCER_DEB_BOOT=require)" "cannot run here: $reason"
    else
        echo "note - NOT RUN: the service was not started under its sandbox: $reason" \
            "(PVE_REBALANCER_DEB_BOOT=require makes this a failure)"
    fi
else
    sim_bin=${PVE_SIM:-$root/target/debug/pve-sim}
    [ -x "$sim_bin" ] || [ -n "${PVE_SIM:-}" ] ||
        (cd "$root" && timeout 900 cargo build -q -p pve-sim --bin pve-sim) >>"$log" 2>&1
    R3=$work/root-boot
    extra=$work/boot-extra
    token_id='root@pam!rebalancer'
    token_secret=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b # the demo scenario's API token
    new_root "$R3"
    check "sandbox run: package installed into its own root" bash -c "
        timeout 120 dpkg --root='$R3' --log='$work/dpkg.log' --force-script-chrootless \
            -i '$work/pve-manager_9.9.0-1_all.deb' '$deb' >>'$log' 2>&1"
    # The test's layer: a target that boots only the basic system, and /etc/pve laid out as
    # on a node (pmxcfs has priv/lock and ha; the node certificate in local/).
    mkdir -p "$extra/etc/systemd/system" "$extra/etc/pve/local" "$extra/etc/pve/priv/lock" "$extra/etc/pve/ha"
    printf '[Unit]\nDescription=pve-rebalancer package test: the basic system only\nRequires=basic.target\nAfter=basic.target\n' \
        >"$extra/etc/systemd/system/pve-rebalancer-test.target"
    check "sandbox run: a node certificate for the service's HTTPS (openssl)" \
        timeout 60 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=pvrb-deb-test -addext subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost \
        -keyout "$extra/etc/pve/local/pve-ssl.key" -out "$extra/etc/pve/local/pve-ssl.pem"
    chmod 0600 "$extra/etc/pve/local/pve-ssl.key"

    boot_cg=$cg2$(sed -n 's/^0:://p' /proc/self/cgroup)/pve-rebalancer-deb-test.$$
    boot_cg=${boot_cg//\/\//\/}
    case $boot_cg in /sys/fs/cgroup/*) ;; *) echo "not a cgroup path: $boot_cg" >"$work/check.out" && boot_cg= ;; esac
    if [ -z "$boot_cg" ] || ! mkdir "$boot_cg" 2>>"$work/check.out"; then
        not_ok "sandbox run: a cgroup for the container" "$(cat "$work/check.out")"
        boot_cg=
    else
        # The subshell moves itself into the new cgroup, which the container's cgroup
        # namespace then makes its root. `timeout` bounds the container's life even if this
        # script is killed before its trap runs.
        (
            echo "$BASHPID" >"$boot_cg/cgroup.procs" &&
                exec timeout 900 unshare --fork --pid --mount --net --uts --ipc --cgroup \
                    --propagation private bash "$root/tests/deb/container-init.sh" "$work" "$extra" "$R3"
        ) >"$work/container.log" 2>&1 &
        boot_pid=$!
        # systemd is up once `is-system-running` answers running (degraded: a unit failed).
        for _ in $(seq 1 120); do
            state=$([ -z "$(ns1)" ] || timeout 10 nsenter -t "$(ns1)" -a systemctl is-system-running 2>"$work/boot-wait.err")
            case $state in running | degraded) break ;; esac
            kill -0 "$boot_pid" 2>/dev/null || break
            sleep 0.5
        done
        check "sandbox run: systemd boots as PID 1 in the container (is-system-running)" bash -c "
            echo 'state: ${state:-no answer} (container PID 1: $(ns1))'; cat '$work/boot-wait.err' '$work/container.log' '$work/console.log'
            [ -z '$(ns1)' ] || timeout 10 nsenter -t '$(ns1)' -a systemctl --failed --no-pager
            [ '$state' = running ]"
        check "sandbox run: systemd sees the package's unit enabled" bash -c "
            [ \"\$(timeout 60 nsenter -t $(ns1) -a systemctl is-enabled pve-rebalancer.service)\" = enabled ]"
        check "sandbox run: the loaded unit has its sandbox (systemctl show)" bash -c "
            out=\$(timeout 60 nsenter -t $(ns1) -a systemctl show pve-rebalancer.service \
                -p ProtectSystem -p NoNewPrivileges -p CapabilityBoundingSet -p PrivateTmp \
                -p SystemCallArchitectures -p MemoryDenyWriteExecute -p RestrictNamespaces)
            echo \"\$out\"
            for want in ProtectSystem=strict NoNewPrivileges=yes CapabilityBoundingSet= PrivateTmp=yes \
                    SystemCallArchitectures=native MemoryDenyWriteExecute=yes RestrictNamespaces=yes; do
                grep -q -x -F \"\$want\" <<<\"\$out\" || { echo \"expected \$want\"; exit 1; }
            done"
        # As shipped (no credentials), the start is skipped: inactive, not failed.
        check "sandbox run: without credentials the start is skipped (inactive, not failed)" bash -c "
            timeout 60 nsenter -t $(ns1) -a systemctl start pve-rebalancer.service
            s=\$(timeout 60 nsenter -t $(ns1) -a systemctl show -P ActiveState pve-rebalancer.service)
            echo \"ActiveState=\$s\"
            [ \"\$s\" = inactive ]"

        # The simulator, in the container's network namespace on PVE's port.
        : >"$work/sim.out"
        if [ -x "$sim_bin" ]; then
            timeout 900 nsenter -t "$(ns1)" -n "$sim_bin" --scenario "$root/tests/pve-sim/scenarios/demo.yaml" \
                --port 8006 --time-scale 20 --ca-out "$work/sim-ca.pem" --csrf-key-out "$work/sim-www.key" \
                >"$work/sim.out" 2>&1 &
            sim_pid=$!
        fi
        check "sandbox run: pve-sim listens on 127.0.0.1:8006 in the container" bash -c "
            [ -x '$sim_bin' ] || { echo 'no simulator binary at $sim_bin (cargo build -p pve-sim)'; exit 1; }
            for _ in \$(seq 1 120); do
                grep -q 'pve-sim listening on' '$work/sim.out' && exit 0
                kill -0 $sim_pid 2>/dev/null || break
                sleep 0.5
            done
            cat '$work/sim.out'; exit 1"
        # What an admin does: the cluster CA and PVE's CSRF key are pmxcfs' (here the
        # simulator's), the credentials go into the env file. Written through the
        # container's root, into its overlay.
        ctroot=/proc/$(ns1)/root
        cp "$work/sim-ca.pem" "$ctroot/etc/pve/pve-root-ca.pem" 2>>"$log"
        install -m 0600 "$work/sim-www.key" "$ctroot/etc/pve/priv/pve-www.key" 2>>"$log"
        printf 'PVE_REBALANCER_TOKEN_ID=%s\nPVE_REBALANCER_TOKEN_SECRET=%s\n' "$token_id" "$token_secret" \
            >>"$ctroot/etc/pve-rebalancer/pve-rebalancer.env"
        check "sandbox run: systemctl start pve-rebalancer succeeds" \
            timeout 60 nsenter -t "$(ns1)" -a systemctl start pve-rebalancer.service
        api() { # METHOD PATH [BODY]: the service's API as the token, from inside the container
            timeout 60 nsenter -t "$(ns1)" -n curl -sS --fail-with-body --max-time 30 \
                --cacert "$extra/etc/pve/local/pve-ssl.pem" -X "$1" \
                -H "Authorization: PVEAPIToken=$token_id=$token_secret" -H 'Content-Type: application/json' \
                ${3:+--data "$3"} "https://127.0.0.1:8017$2"
        }
        check "sandbox run: the service answers on https://127.0.0.1:8017 (health)" bash -c "
            for _ in \$(seq 1 120); do
                timeout 10 nsenter -t $(ns1) -n curl -sS --max-time 5 --cacert '$extra/etc/pve/local/pve-ssl.pem' \
                    https://127.0.0.1:8017/api/v1/health 2>&1 | grep -q '\"status\":\"ok\"' && exit 0
                sleep 0.5
            done
            timeout 60 nsenter -t $(ns1) -a journalctl -u pve-rebalancer --no-pager | tail -n 20; exit 1"
        api POST /api/v1/plan '{}' >"$work/plan.json" 2>&1
        check "sandbox run: POST /api/v1/plan returns a plan with steps" bash -c "
            jq -e '.steps | length > 0' '$work/plan.json' >/dev/null || { head -c 2000 '$work/plan.json'; exit 1; }"
        # Execute the first step: the journal (/var/lib/pve-rebalancer), the cluster lock
        # (/etc/pve/priv/lock) and the audit (/etc/pve/pve-rebalancer) are written under the
        # sandbox, and the migration is followed to its landing.
        first=$(jq -r '.steps[0].vmid' "$work/plan.json" 2>/dev/null)
        jq -c --argjson v "${first:-0}" '{plan: ., steps: [$v]}' "$work/plan.json" >"$work/exec.json" 2>>"$log"
        api POST /api/v1/plan/execute "@$work/exec.json" >"$work/exec.out" 2>&1
        job=$(jq -r '.job_id // empty' "$work/exec.out" 2>/dev/null)
        check "sandbox run: POST /api/v1/plan/execute starts a job (guest $first)" bash -c "
            [ -n '$job' ] || { cat '$work/exec.out'; exit 1; }"
        check "sandbox run: the job ends done (the guest landed)" bash -c "
            for _ in \$(seq 1 240); do
                s=\$(timeout 30 nsenter -t $(ns1) -n curl -sS --max-time 20 --cacert '$extra/etc/pve/local/pve-ssl.pem' \
                    -H 'Authorization: PVEAPIToken=$token_id=$token_secret' https://127.0.0.1:8017/api/v1/jobs/$job \
                    | jq -r .state)
                [ \"\$s\" = running ] || break
                sleep 0.5
            done
            echo \"job $job: \$s\"; [ \"\$s\" = done ]"
        # A stored setting goes to the cluster-wide state directory on pmxcfs.
        api PUT /api/v1/settings '{"balanciness": 12}' >"$work/settings.out" 2>&1
        check "sandbox run: PUT /api/v1/settings is stored (balanciness 12)" bash -c "
            jq -e '.. | objects | select(has(\"balanciness\")) | .balanciness == 12' '$work/settings.out' | grep -q true ||
                { head -c 2000 '$work/settings.out'; exit 1; }"
        check "sandbox run: journal and settings written where the sandbox allows" bash -c "
            ls -la '$ctroot/var/lib/pve-rebalancer' '$ctroot/etc/pve/pve-rebalancer'
            test -s '$ctroot/var/lib/pve-rebalancer/journal.sqlite' &&
            grep -q balanciness '$ctroot/etc/pve/pve-rebalancer/settings.json'"
        # The process itself: seccomp filter on, no new privileges, no capabilities.
        check "sandbox run: the service process is confined (seccomp, NoNewPrivs, no capabilities)" bash -c "
            pid=\$(timeout 60 nsenter -t $(ns1) -a systemctl show -P MainPID pve-rebalancer.service)
            st=\$(timeout 60 nsenter -t $(ns1) -a cat /proc/\$pid/status)
            grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd|CapPrm):' <<<\"\$st\"
            grep -q -P '^Seccomp:\t2$' <<<\"\$st\" && grep -q -P '^NoNewPrivs:\t1$' <<<\"\$st\" &&
            grep -q -P '^CapBnd:\t0+$' <<<\"\$st\" && grep -q -P '^CapEff:\t0+$' <<<\"\$st\""
        check "sandbox run: still active, never restarted" bash -c "
            out=\$(timeout 60 nsenter -t $(ns1) -a systemctl show -p ActiveState -p SubState -p NRestarts pve-rebalancer.service)
            echo \"\$out\"
            grep -q -x ActiveState=active <<<\"\$out\" && grep -q -x NRestarts=0 <<<\"\$out\""
        # A system call the filter refuses fails with EPERM (SystemCallErrorNumber=), a write
        # outside the writable paths with EROFS: either would be logged by the service.
        timeout 60 nsenter -t "$(ns1)" -a journalctl -u pve-rebalancer --no-pager >"$work/unit-journal.txt" 2>&1
        check "sandbox run: the unit's journal shows no refused operation" bash -c "
            grep -q 'pve-rebalancer listening on' '$work/unit-journal.txt' ||
                { echo 'the journal has no start of the service:'; tail -n 5 '$work/unit-journal.txt'; exit 1; }
            ! grep -n -i -E 'operation not permitted|permission denied|read-only file system|EPERM|EROFS|EACCES|seccomp|SIGSYS|bad system call| ERROR ' \
                '$work/unit-journal.txt'"
        check "sandbox run: systemctl stop ends it cleanly (inactive, result success)" bash -c "
            timeout 60 nsenter -t $(ns1) -a systemctl stop pve-rebalancer.service &&
            out=\$(timeout 60 nsenter -t $(ns1) -a systemctl show -p ActiveState -p Result pve-rebalancer.service) &&
            echo \"\$out\" && grep -q -x ActiveState=inactive <<<\"\$out\" && grep -q -x Result=success <<<\"\$out\""
        echo "#   the unit's journal in the container (last lines):"
        tail -n 8 "$work/unit-journal.txt" | sed 's/^/#     /'
    fi
    boot_cleanup
fi

if [ "$failed" != 0 ]; then
    echo "# dpkg output:" && sed 's/^/#   /' "$log" | tail -n 60
fi
echo "deb: $passed passed, $failed failed"
[ "$failed" = 0 ]
