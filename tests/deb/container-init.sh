#!/usr/bin/env bash
# tests/deb/container-init.sh WORK LAYER...: PID 1 of the package test's throwaway container
# (see "the service under its sandbox" in tests/deb/run.sh, which starts this with
# `unshare --fork --pid --mount --net --uts --ipc --cgroup`). Builds a root file system and
# execs this machine's systemd as PID 1 in it, so that the installed unit runs under a real
# service manager with every sandbox directive applied.
#
# The root is an overlay: the LAYERs (copied into a tmpfs, first one on top; the installed
# package's dpkg root, the test's own additions) over this machine's `/`, read-only below a
# tmpfs upper layer. Nothing written in the container reaches the machine: every mount is
# in this process's private mount namespace and disappears with it.
set -euo pipefail
work=$1
shift
ct=$work/ct
say() { echo "container-init: $*" >&2; }

mount --make-rprivate /
mkdir -p "$ct"
mount -t tmpfs -o mode=0755,size=1g pvrb-ct "$ct"
mkdir -p "$ct/upper" "$ct/ovl-work" "$ct/root"
# The layers are copied onto the tmpfs: overlayfs refuses (ELOOP) a lower layer that lies
# inside another lower layer, and `/` is one. dpkg's own database of the install root
# (stand-in packages) must not shadow the machine's.
lower=
i=0
for layer in "$@"; do
    i=$((i + 1))
    mkdir -p "$ct/layer$i"
    tar -C "$layer" --exclude=./var/lib/dpkg -cf - . | tar -C "$ct/layer$i" -xf -
    # On a merged-/usr system (/lib -> usr/lib, ...) dpkg puts /lib/systemd/system/... into
    # usr/lib; a real lib/ directory in a layer would hide the machine's /lib symlink and
    # with it every shared library.
    for top in "$ct/layer$i"/*; do
        name=${top##*/}
        if [ -d "$top" ] && [ ! -L "$top" ] && [ -L "/$name" ]; then
            target=$(readlink "/$name")
            case $target in /*) ;; *) target=/$target ;; esac
            mkdir -p "$ct/layer$i$target"
            cp -a "$top/." "$ct/layer$i$target/"
            rm -rf "$top"
        fi
    done
    lower=${lower:+$lower:}$ct/layer$i
done
mount -t overlay pvrb-root -o "lowerdir=${lower:+$lower:}/,upperdir=$ct/upper,workdir=$ct/ovl-work" "$ct/root"
r=$ct/root

# What systemd needs from a container manager (as systemd-nspawn provides it): /proc, a
# read-only /sys, the cgroup2 hierarchy (this process's own cgroup is its root: --cgroup),
# a minimal /dev, /run and /tmp.
mount -t proc proc "$r/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid,size=4m dev "$r/dev"
for d in null zero full random urandom tty; do
    touch "$r/dev/$d"
    mount --bind "/dev/$d" "$r/dev/$d"
done
mkdir -p "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
# systemd writes its own status and log lines to the console: a file the test can show.
touch "$r/dev/console" "$work/console.log"
mount --bind "$work/console.log" "$r/dev/console"
mount -t tmpfs -o mode=0755,nosuid,nodev run "$r/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$r/tmp"
hostname pvrb-deb-test

cd "$r"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
# `container=` tells systemd it is not on bare metal (no udev, no kernel settings, no
# hardware units), as nspawn and LXC do. The test's own target starts nothing but the basic
# system (journald); the test then starts the service with systemctl.
export container=pve-rebalancer-deb-test
say "exec systemd"
exec /lib/systemd/systemd --unit=pve-rebalancer-test.target --log-target=console --show-status=no
