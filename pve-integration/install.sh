#!/bin/sh
# install.sh: add or remove the pve-rebalancer <script> line in the PVE web UI template.
#
# Copyright (C) pve-rebalancer contributors. SPDX-License-Identifier: AGPL-3.0-or-later
#
# Usage: install.sh add|remove|status [TEMPLATE]
#
#   add     insert our <script> line right after the line that loads pvemanagerlib.js
#           (does nothing if the line is already there)
#   remove  delete our line again; the file is then byte-identical to before `add`
#           (does nothing if the line is not there)
#   status  print "installed" or "not installed"
#
# TEMPLATE defaults to $PVE_INDEX_TEMPLATE, else /usr/share/pve-manager/index.html.tpl.
# pveproxy renders the template on every request, so no restart is needed.
#
# Exit codes: 0 ok (status: installed), 1 status: not installed, 2 usage error,
#             3 template missing or unreadable, 4 anchor line not found (nothing changed),
#             5 could not write the template.
#
# Writes are atomic: a temp file in the same directory, with the template's mode and
# owner, renamed over it. Used by the Debian package's postinst and its dpkg trigger on
# /usr/share/pve-manager/index.html.tpl (pve-manager upgrades replace the template).

set -eu

SCRIPT_SRC='/pve2/js/pve-rebalancer/pve-rebalancer.js'
LINE='<script type="text/javascript" src="/pve2/js/pve-rebalancer/pve-rebalancer.js"></script>'
DEFAULT_TEMPLATE='/usr/share/pve-manager/index.html.tpl'

prog=$(basename "$0")

usage() {
    echo "usage: $prog add|remove|status [TEMPLATE]" >&2
    echo "  TEMPLATE defaults to \$PVE_INDEX_TEMPLATE or $DEFAULT_TEMPLATE" >&2
    exit 2
}

die() {
    code=$1
    shift
    echo "$prog: $*" >&2
    exit "$code"
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
cmd=$1
tpl=${2:-${PVE_INDEX_TEMPLATE:-$DEFAULT_TEMPLATE}}

case $cmd in
    add | remove | status) ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac

[ -f "$tpl" ] || die 3 "template $tpl not found (is pve-manager installed?)"
[ -r "$tpl" ] || die 3 "template $tpl is not readable"

# Replace a symlink's target, not the link itself.
if [ -L "$tpl" ]; then
    tpl=$(readlink -f "$tpl") || die 3 "cannot resolve symlink $tpl"
fi

# Our line is recognised by its src attribute alone (fixed string, any indentation).
is_installed() {
    grep -F -q "src=\"$SCRIPT_SRC\"" "$tpl"
}

# 1 if the file's last byte is a newline (or the file is empty), else 0. The awk
# programs below need it to reproduce a missing final newline exactly.
final_newline() {
    if [ ! -s "$tpl" ] || [ -z "$(tail -c 1 "$tpl")" ]; then
        echo 1
    else
        echo 0
    fi
}

tmp=''
cleanup() {
    if [ -n "$tmp" ]; then
        rm -f "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# write_with AWK_PROGRAM: run the program over the template into a temp file next to
# it, then rename that over the template.
write_with() {
    dir=$(dirname "$tpl")
    tmp=$(mktemp "$dir/.index.html.tpl.pve-rebalancer.XXXXXX") ||
        die 5 "cannot create a temporary file in $dir"
    # cp -p first, so the temp file has the template's mode, owner and group; the
    # redirection below only replaces its content.
    cp -p "$tpl" "$tmp" || die 5 "cannot copy $tpl"
    awk -v nl="$(final_newline)" -v line="$LINE" -v src="src=\"$SCRIPT_SRC\"" "$1" \
        "$tpl" >"$tmp" || die 5 "cannot write $tmp"
    mv -f "$tmp" "$tpl" || die 5 "cannot replace $tpl"
    tmp=''
}

# Shared awk pieces: out() prints a line, putting the newline *between* lines, and END
# adds the final newline only if the original had one.
AWK_OUT='
function out(s) { if (n++) printf "\n"; printf "%s", s }
END { if (n && nl == 1) printf "\n" }
'

case $cmd in
    status)
        if is_installed; then
            echo "installed ($tpl)"
            exit 0
        fi
        echo "not installed ($tpl)"
        exit 1
        ;;

    add)
        if is_installed; then
            echo "already installed in $tpl"
            exit 0
        fi
        grep -q 'pvemanagerlib\.js' "$tpl" ||
            die 4 "no line loading pvemanagerlib.js found in $tpl; nothing changed"
        # After the FIRST line that loads pvemanagerlib.js; keeps the anchor's
        # indentation and its CRLF ending, if any.
        write_with "$AWK_OUT"'
{
    out($0)
    if (!done && $0 ~ /pvemanagerlib\.js/) {
        indent = $0; sub(/[^ \t].*$/, "", indent)
        cr = (substr($0, length($0)) == "\r") ? "\r" : ""
        out(indent line cr)
        done = 1
    }
}'
        echo "added the pve-rebalancer script line to $tpl"
        ;;

    remove)
        if ! is_installed; then
            echo "not installed in $tpl; nothing to do"
            exit 0
        fi
        write_with "$AWK_OUT"'
{ if (index($0, src) == 0) out($0) }'
        echo "removed the pve-rebalancer script line from $tpl"
        ;;
esac
