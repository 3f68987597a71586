#!/usr/bin/env bash
# Makes a Debian machine ready to run logd: installs redis-server and
# postgresql (and, with --test, what the test suite drives: nginx, chromium,
# and the log shippers of test/helpers/shippers.ts: rsyslog with RELP and TLS,
# logger, systemd-journal-upload and syslog-ng) from Debian's packages when
# they are missing, installs the npm dependencies when package-lock.json
# changed, and builds. Idempotent and quiet when there is nothing to do.
#
# rsyslog and syslog-ng-core conflict as packages (both are the
# system-log-daemon), so syslog-ng-core and syslog-ng-mod-http are not
# installed but unpacked into $LOGD_SYSLOG_NG_PREFIX (default
# /opt/logd-syslog-ng), their library dependencies installed as packages.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSLOG_NG_PREFIX=${LOGD_SYSLOG_NG_PREFIX:-/opt/logd-syslog-ng}
need=()
want_syslog_ng=
[ -x /usr/bin/redis-server ] || command -v redis-server >/dev/null || need+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
if [ "${1:-}" = --test ]; then
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx-light)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
  compgen -G '/usr/lib/*/rsyslog/omrelp.so' >/dev/null || need+=(rsyslog-relp)
  compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null || need+=(rsyslog-gnutls)
  compgen -G '/usr/lib/*/rsyslog/omelasticsearch.so' >/dev/null || need+=(rsyslog-elasticsearch)
  [ -x /usr/bin/zstd ] || need+=(zstd)
  [ -x /usr/bin/logger ] || need+=(bsdutils)
  { [ -x /lib/systemd/systemd-journal-upload ] && [ -x /lib/systemd/systemd-journal-remote ]; } || need+=(systemd-journal-remote)
  sng_libs="$SYSLOG_NG_PREFIX/usr/lib/syslog-ng"
  if [ ! -x "$SYSLOG_NG_PREFIX/usr/sbin/syslog-ng" ] || ! compgen -G "$sng_libs/*/libhttp.so" >/dev/null; then
    want_syslog_ng=1
  else
    # unpacked, but a library it needs may be gone
    case "$(LD_LIBRARY_PATH=$sng_libs ldd "$SYSLOG_NG_PREFIX/usr/sbin/syslog-ng" "$sng_libs"/*/libhttp.so 2>&1)" in
      *'not found'*) want_syslog_ng=1 ;;
    esac
  fi
fi
if [ ${#need[@]} -gt 0 ] || [ -n "$want_syslog_ng" ]; then
  sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # Keep the packages' scripts from starting daemons (rsyslog, nginx) on a
  # machine without systemd, unless the machine already has a policy.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    trap "$sudo rm -f /usr/sbin/policy-rc.d" EXIT
  fi
  # --no-remove: fail rather than replace another system-log-daemon (e.g. an installed syslog-ng-core).
  install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-remove)
  if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need[*]} from Debian's packages" >&2
    $sudo "${install[@]}" "${need[@]}" >/dev/null
  fi
  if [ -n "$want_syslog_ng" ]; then
    echo "bootstrap: unpacking syslog-ng-core and syslog-ng-mod-http into $SYSLOG_NG_PREFIX" >&2
    dl=$(mktemp -d)
    chmod 755 "$dl"
    if getent passwd _apt >/dev/null; then $sudo chown _apt "$dl"; fi
    (cd "$dl" && $sudo apt-get download -qq syslog-ng-core syslog-ng-mod-http)
    # Their Depends, first alternative, without versions, less syslog-ng itself.
    mapfile -t deps < <(for deb in "$dl"/*.deb; do dpkg-deb -f "$deb" Depends; echo; done \
      | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/[[:space:]]//g' | grep -v -e '^syslog-ng' -e '^$' | sort -u)
    $sudo "${install[@]}" "${deps[@]}" >/dev/null
    $sudo rm -rf "$SYSLOG_NG_PREFIX.new"
    $sudo mkdir -p "$SYSLOG_NG_PREFIX.new"
    for deb in "$dl"/*.deb; do $sudo dpkg-deb -x "$deb" "$SYSLOG_NG_PREFIX.new"; done
    $sudo rm -rf "$SYSLOG_NG_PREFIX" "$dl"
    $sudo mv "$SYSLOG_NG_PREFIX.new" "$SYSLOG_NG_PREFIX"
  fi
fi

if [ ! node_modules/.package-lock.json -nt package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
