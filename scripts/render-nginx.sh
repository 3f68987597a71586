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
                       With --tls-cert this listener only redirects to TLS.
  --tls-cert FILE      absolute path of the PEM certificate (chain) and
  --tls-key FILE       of its private key: enables the TLS server (the lines
                       starting with "#tls "). Both or neither. nginx's master
                       reads them at start and reload (root may own them, 0600).
  --tls-listen PORT|ADDR:PORT
                       TLS listen address (default 443); needs --tls-cert.
  --real-ip-from CIDR  a proxy or load balancer whose header names the client
                       (IPv4/IPv6 address or network; repeatable). Rate limits
                       then key on the client's address. Never list networks
                       that clients themselves connect from.
  --real-ip-header NAME
                       the header those proxies set (default X-Forwarded-For;
                       e.g. X-Real-IP); needs --real-ip-from.
  --rate N             ingest limit_req_zone rate, N requests/s per client
                       address (or "Nr/s", "Nr/m"); line marked "# logd-rate",
                       default 9000r/s.
  --query-rate N       the same for the query zone (/api/logs, /api/stats,
                       /api/); line marked "# logd-query-rate", default 1000r/s.
  --burst N            burst for /api/log and /api/logs/batch
                       (lines marked "# logd-ingest-burst", default 9000).
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
  scripts/render-nginx.sh --tls-cert /etc/logd/tls/fullchain.pem --tls-key /etc/logd/tls/privkey.pem \
      --real-ip-from 10.0.0.0/24 127.0.0.1:8000 > /etc/logd/nginx.conf
  install -d -m 0755 /tmp/ngx /tmp/ngx/logs
  nginx -p /tmp/ngx/ -c /tmp/ngx/nginx.conf -g 'daemon off;'
EOF
}

die() { printf 'render-nginx.sh: %s\n' "$*" >&2; exit 2; }

listen="" rate="" qrate="" burst="" qburst="" hint=0
tls_cert="" tls_key="" tls_listen="" real_ip_header=""
servers=() real_ip_from=()
while (($#)); do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --listen) (($# >= 2)) || die "--listen needs a value"; listen=$2; shift 2 ;;
        --listen=*) listen=${1#*=}; shift ;;
        --rate) (($# >= 2)) || die "--rate needs a value"; rate=$2; shift 2 ;;
        --rate=*) rate=${1#*=}; shift ;;
        --query-rate) (($# >= 2)) || die "--query-rate needs a value"; qrate=$2; shift 2 ;;
        --query-rate=*) qrate=${1#*=}; shift ;;
        --tls-cert) (($# >= 2)) || die "--tls-cert needs a value"; tls_cert=$2; shift 2 ;;
        --tls-cert=*) tls_cert=${1#*=}; shift ;;
        --tls-key) (($# >= 2)) || die "--tls-key needs a value"; tls_key=$2; shift 2 ;;
        --tls-key=*) tls_key=${1#*=}; shift ;;
        --tls-listen) (($# >= 2)) || die "--tls-listen needs a value"; tls_listen=$2; shift 2 ;;
        --tls-listen=*) tls_listen=${1#*=}; shift ;;
        --real-ip-from) (($# >= 2)) || die "--real-ip-from needs a value"; real_ip_from+=("$2"); shift 2 ;;
        --real-ip-from=*) real_ip_from+=("${1#*=}"); shift ;;
        --real-ip-header) (($# >= 2)) || die "--real-ip-header needs a value"; real_ip_header=$2; shift 2 ;;
        --real-ip-header=*) real_ip_header=${1#*=}; shift ;;
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

# Prints the port of a PORT or ADDR:PORT listen address; fails on anything else.
listen_port() {
    if [[ $2 =~ ^[0-9]+$ ]]; then
        valid_port "$2" || die "bad $1 port: $2"
        printf '%s' "$2"
    elif [[ $2 =~ ^(\[[0-9A-Fa-f:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):([0-9]+)$ ]]; then
        local port=${BASH_REMATCH[2]}
        valid_port "$port" || die "bad $1 port: $2"
        printf '%s' "$port"
    else
        die "bad $1 (want PORT or ADDR:PORT): $2"
    fi
}
if [[ -n $listen ]]; then listen_port --listen "$listen" > /dev/null; fi

# Normalizes a rate in $2 (N, Nr/s or Nr/m) for option $1.
check_rate() {
    local r=$2
    if [[ $r =~ ^[0-9]+$ ]]; then r="${r}r/s"; fi
    [[ $r =~ ^[1-9][0-9]*r/[sm]$ ]] || die "bad $1 (want N, Nr/s or Nr/m): $2"
    printf '%s' "$r"
}
if [[ -n $rate ]]; then rate=$(check_rate --rate "$rate"); fi
if [[ -n $qrate ]]; then qrate=$(check_rate --query-rate "$qrate"); fi

# TLS: both files or neither. Absolute paths without characters nginx (or
# awk, below) would read as syntax.
tls_port=""
syntax_chars=$'[[:space:];\'"{}$\\]'
if [[ -n $tls_cert || -n $tls_key ]]; then
    [[ -n $tls_cert && -n $tls_key ]] || die "--tls-cert and --tls-key go together"
    for f in "$tls_cert" "$tls_key"; do
        [[ $f == /* && ! $f =~ $syntax_chars ]] || die "bad TLS file (want an absolute path without spaces, ';', quotes, braces, '\$' or '\\'): $f"
    done
    tls_listen=${tls_listen:-443}
    tls_port=$(listen_port --tls-listen "$tls_listen")
elif [[ -n $tls_listen ]]; then
    die "--tls-listen needs --tls-cert and --tls-key"
fi

# Trusted proxies: IPv4 or IPv6 addresses or networks.
for cidr in "${real_ip_from[@]}"; do
    [[ $cidr =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?$ || $cidr =~ ^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(/[0-9]{1,3})?$ ]] \
        || die "bad --real-ip-from (want an IPv4 or IPv6 address or CIDR network): $cidr"
done
if [[ -n $real_ip_header ]]; then
    ((${#real_ip_from[@]} > 0)) || die "--real-ip-header needs --real-ip-from"
    [[ $real_ip_header =~ ^[A-Za-z0-9-]+$ ]] || die "bad --real-ip-header (want a header name): $real_ip_header"
fi
((${#real_ip_from[@]} == 0)) || real_ip_header=${real_ip_header:-X-Forwarded-For}
[[ -z $burst || $burst =~ ^[0-9]+$ ]] || die "bad --burst: $burst"
[[ -z $qburst || $qburst =~ ^[0-9]+$ ]] || die "bad --query-burst: $qburst"

# Everything is rendered into a variable first so that a failure never leaves
# half a config on stdout.
rendered=$(awk \
    -v servers="${servers[*]}" \
    -v listen="$listen" -v rate="$rate" -v qrate="$qrate" -v burst="$burst" -v qburst="$qburst" \
    -v tls_cert="$tls_cert" -v tls_key="$tls_key" -v tls_listen="$tls_listen" -v tls_port="$tls_port" \
    -v real_ip_from="${real_ip_from[*]}" -v real_ip_header="$real_ip_header" '
    function fail(msg) { printf "render-nginx.sh: %s: %s\n", FILENAME, msg > "/dev/stderr"; bad = 1; exit 3 }
    # The TLS server: "#tls " lines become directives when a certificate is given.
    /^[ \t]*#tls / {
        ntls++
        if (tls_cert != "") sub(/#tls /, "")
    }
    /^[ \t]*#[ \t]*logd-real-ip-begin[ \t]*$/ {
        if (inrealip || nrealip) fail("duplicate logd-real-ip-begin marker")
        inrealip = 1; nrealip++; print
        realip_indent = $0; sub(/[^ \t].*$/, "", realip_indent)
        n = split(real_ip_from, list, " ")
        for (i = 1; i <= n; i++) printf "%sset_real_ip_from %s;\n", realip_indent, list[i]
        if (n) {
            printf "%sreal_ip_header %s;\n", realip_indent, real_ip_header
            # Skips every trusted proxy in a chain (e.g. CDN, then load balancer).
            printf "%sreal_ip_recursive on;\n", realip_indent
        }
        next
    }
    /^[ \t]*#[ \t]*logd-real-ip-end[ \t]*$/ {
        if (!inrealip) fail("logd-real-ip-end without logd-real-ip-begin")
        inrealip = 0; print; next
    }
    # Whatever the shipped file has between the real-IP markers is replaced.
    inrealip { next }
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
    /;[ \t]*#[ \t]*logd-query-rate[ \t]*$/ {
        nqrate++
        if (qrate != "" && !sub(/rate=[0-9]+r\/[sm]/, "rate=" qrate)) fail("cannot rewrite the logd-query-rate line")
    }
    /;[ \t]*#[ \t]*logd-tls-listen[ \t]*$/ {
        ntlslisten++
        if (tls_cert != "" && !sub(/listen[ \t]+[^ \t;]+/, "listen " tls_listen)) fail("cannot rewrite the logd-tls-listen line")
    }
    /;[ \t]*#[ \t]*logd-tls-cert[ \t]*$/ {
        ntlscert++
        if (tls_cert != "" && !sub(/ssl_certificate[ \t]+[^ \t;]+/, "ssl_certificate     " tls_cert)) fail("cannot rewrite the logd-tls-cert line")
    }
    /;[ \t]*#[ \t]*logd-tls-key[ \t]*$/ {
        ntlskey++
        if (tls_cert != "" && !sub(/ssl_certificate_key[ \t]+[^ \t;]+/, "ssl_certificate_key " tls_key)) fail("cannot rewrite the logd-tls-key line")
    }
    /[;}][ \t]*#[ \t]*logd-tls-redirect[ \t]*$/ {
        ntlsredirect++
        # The default port stays implicit in the redirect; any other is named.
        if (tls_cert != "" && tls_port != "443" && !sub(/https:\/\/\$host/, "https://$host:" tls_port)) fail("cannot rewrite the logd-tls-redirect line")
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
        if (nqrate != 1) fail("need exactly one logd-query-rate marker")
        if (nrealip != 1 || inrealip) fail("need exactly one logd-real-ip-begin/end marker pair")
        if (ntlslisten != 1 || ntlscert != 1 || ntlskey != 1 || ntlsredirect != 1) fail("need exactly one each of the logd-tls-listen, -cert, -key and -redirect markers")
        if (ntls < 4) fail("no \"#tls \" lines")
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
