#!/usr/bin/env bash
# Render conf/nginx.conf for a given set of logd instances.
# conf/nginx.conf stays the single source: this only rewrites its marked lines.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf="$script_dir/../conf/nginx.conf"

usage() {
    cat <<'EOF'
Usage: scripts/render-nginx.sh [options] HOST:PORT [HOST:PORT...] > out.conf

Prints conf/nginx.conf with the servers of `upstream logd` (the lines between
"# logd-upstream-begin" and "# logd-upstream-end") replaced by one server line
per given logd instance. Each new line keeps the parameters of the shipped
server line (weight=1 max_fails=3 fail_timeout=30s).

Instances:
  HOST:PORT            IPv4 address, host name, or [IPv6]:PORT
  unix:/path.sock      a Unix socket

Options:
  --listen PORT|ADDR:PORT
                       replace the listen address (line marked "# logd-listen";
                       default 80). Use a port above 1023 when not root.
  --rate N             limit_req_zone rate, N requests/s per client address
                       (or "Nr/s", "Nr/m"); line marked "# logd-rate", default
                       10000r/s.
  --burst N            burst for /api/log and /api/logs/batch
                       (lines marked "# logd-ingest-burst", default 20000).
  --query-burst N      burst for /api/logs, /api/stats, /api/
                       (lines marked "# logd-query-burst", default 200).
  --conf FILE          source file (default: conf/nginx.conf next to this script).
  --prefix-hint        also print, on stderr, how to lay out the nginx prefix
                       and run the rendered file.
  -h, --help           this text.

To provoke 429s in a test, lower both the rate and the burst, e.g.
  --rate 5 --burst 10 --query-burst 5
(with nodelay, the first burst+1 requests always pass whatever the rate).
Start a fresh nginx for such a config: the api_limit zone's state survives
`nginx -s reload`, so a flooded zone keeps refusing at the new, lower rate.

Example:
  scripts/render-nginx.sh --listen 8080 127.0.0.1:8001 127.0.0.1:8002 > /tmp/ngx/nginx.conf
  install -d -m 0755 /tmp/ngx /tmp/ngx/logs
  nginx -p /tmp/ngx/ -c /tmp/ngx/nginx.conf -g 'daemon off;'
EOF
}

die() { printf 'render-nginx.sh: %s\n' "$*" >&2; exit 2; }

listen="" rate="" burst="" qburst="" hint=0
servers=()
while (($#)); do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --listen) (($# >= 2)) || die "--listen needs a value"; listen=$2; shift 2 ;;
        --listen=*) listen=${1#*=}; shift ;;
        --rate) (($# >= 2)) || die "--rate needs a value"; rate=$2; shift 2 ;;
        --rate=*) rate=${1#*=}; shift ;;
        --burst) (($# >= 2)) || die "--burst needs a value"; burst=$2; shift 2 ;;
        --burst=*) burst=${1#*=}; shift ;;
        --query-burst) (($# >= 2)) || die "--query-burst needs a value"; qburst=$2; shift 2 ;;
        --query-burst=*) qburst=${1#*=}; shift ;;
        --conf) (($# >= 2)) || die "--conf needs a value"; conf=$2; shift 2 ;;
        --conf=*) conf=${1#*=}; shift ;;
        --prefix-hint) hint=1; shift ;;
        --) shift; servers+=("$@"); break ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) servers+=("$1"); shift ;;
    esac
done

((${#servers[@]} > 0)) || { usage >&2; die "at least one HOST:PORT is required"; }
[[ -r $conf ]] || die "cannot read $conf"

valid_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }

declare -A seen=()
for s in "${servers[@]}"; do
    # A repeated instance would silently get twice the traffic.
    [[ -z ${seen[$s]:-} ]] || die "instance given twice: $s"
    seen[$s]=1
    if [[ $s =~ ^unix:/[^[:space:]\;]+$ ]]; then
        continue
    elif [[ $s =~ ^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]+)$ ]]; then
        valid_port "${BASH_REMATCH[3]}" || die "bad port in instance: $s"
    else
        die "bad instance (want HOST:PORT, [IPv6]:PORT or unix:/path): $s"
    fi
done

if [[ -n $listen ]]; then
    if [[ $listen =~ ^[0-9]+$ ]]; then
        valid_port "$listen" || die "bad --listen port: $listen"
    elif [[ $listen =~ ^(\[[0-9A-Fa-f:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):([0-9]+)$ ]]; then
        valid_port "${BASH_REMATCH[2]}" || die "bad --listen port: $listen"
    else
        die "bad --listen (want PORT or ADDR:PORT): $listen"
    fi
fi
if [[ -n $rate ]]; then
    if [[ $rate =~ ^[0-9]+$ ]]; then rate="${rate}r/s"; fi
    [[ $rate =~ ^[1-9][0-9]*r/[sm]$ ]] || die "bad --rate (want N, Nr/s or Nr/m): $rate"
fi
[[ -z $burst || $burst =~ ^[0-9]+$ ]] || die "bad --burst: $burst"
[[ -z $qburst || $qburst =~ ^[0-9]+$ ]] || die "bad --query-burst: $qburst"

# Everything is rendered into a variable first so that a failure never leaves
# half a config on stdout.
rendered=$(awk \
    -v servers="${servers[*]}" \
    -v listen="$listen" -v rate="$rate" -v burst="$burst" -v qburst="$qburst" '
    function fail(msg) { printf "render-nginx.sh: %s: %s\n", FILENAME, msg > "/dev/stderr"; bad = 1; exit 3 }
    /^[ \t]*#[ \t]*logd-upstream-begin[ \t]*$/ {
        if (inblk || nbegin) fail("duplicate logd-upstream-begin marker")
        inblk = 1; nbegin++; print; next
    }
    /^[ \t]*#[ \t]*logd-upstream-end[ \t]*$/ {
        if (!inblk) fail("logd-upstream-end without logd-upstream-begin")
        if (!seen_server) fail("no server line between the logd-upstream markers")
        n = split(servers, list, " ")
        for (i = 1; i <= n; i++) printf "%sserver %s%s;\n", indent, list[i], params
        inblk = 0; nend++; print; next
    }
    inblk {
        # Drop the shipped lines; keep the indentation and the parameters of
        # the first server line.
        if ($1 == "server" && !seen_server) {
            indent = $0; sub(/[^ \t].*$/, "", indent)
            p = ""
            for (i = 3; i <= NF; i++) { if ($i ~ /^#/) break; p = p " " $i }
            sub(/[ \t]*;.*$/, "", p)
            params = p
            seen_server = 1
        }
        next
    }
    /;[ \t]*#[ \t]*logd-listen[ \t]*$/ {
        nlisten++
        if (listen != "" && !sub(/listen[ \t]+[^ \t;]+/, "listen " listen)) fail("cannot rewrite the logd-listen line")
    }
    /;[ \t]*#[ \t]*logd-rate[ \t]*$/ {
        nrate++
        if (rate != "" && !sub(/rate=[0-9]+r\/[sm]/, "rate=" rate)) fail("cannot rewrite the logd-rate line")
    }
    /;[ \t]*#[ \t]*logd-ingest-burst[ \t]*$/ {
        niburst++
        if (burst != "" && !sub(/burst=[0-9]+/, "burst=" burst)) fail("cannot rewrite a logd-ingest-burst line")
    }
    /;[ \t]*#[ \t]*logd-query-burst[ \t]*$/ {
        nqburst++
        if (qburst != "" && !sub(/burst=[0-9]+/, "burst=" qburst)) fail("cannot rewrite a logd-query-burst line")
    }
    { print }
    END {
        if (bad) exit 3
        if (nbegin != 1 || nend != 1) fail("need exactly one logd-upstream-begin/end marker pair")
        if (!seen_server) fail("no server line between the logd-upstream markers")
        if (nlisten < 1) fail("no logd-listen marker")
        if (nrate != 1) fail("need exactly one logd-rate marker")
        if (niburst < 1) fail("no logd-ingest-burst marker")
        if (nqburst < 1) fail("no logd-query-burst marker")
    }
' "$conf")

printf '%s\n' "$rendered"

if ((hint)); then
    cat >&2 <<'EOF'
# nginx prefix for this config (all its paths are relative to -p PREFIX/):
#   install -d -m 0755 PREFIX PREFIX/logs     # workers (nobody when started as root) must traverse PREFIX
#   nginx -t -p PREFIX/ -c /abs/path/out.conf
#   nginx    -p PREFIX/ -c /abs/path/out.conf -g 'daemon off;'
#   nginx    -p PREFIX/ -c /abs/path/out.conf -s reload|quit
# PREFIX/logs/ gets nginx.pid, error.log, access.log; nginx creates PREFIX/*_temp/.
EOF
fi
