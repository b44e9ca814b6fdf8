#!/usr/bin/env bash
# Prints the path of a victoria-metrics binary (a real OTLP/protobuf receiver with a Prometheus query
# API), fetching Debian trixie's package with a private apt state (system apt is not touched) into a
# cache outside the repository on first use. The binary runs on bookworm.
set -euo pipefail
CACHE=${VM_METRICS_CI_CACHE:-/var/cache/vm-metrics-ci}
BIN="$CACHE/victoria-metrics/usr/bin/victoria-metrics"
if [ ! -x "$BIN" ]; then
  W="$CACHE/apt-trixie"
  mkdir -p "$W/lists/partial" "$W/cache/archives/partial" "$CACHE/victoria-metrics"
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  echo "deb ${MIRROR:-http://deb.debian.org/debian} trixie main" > "$W/sources.list"
  ALT=(-o "Dir::Etc::sourcelist=$W/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$W/lists"
       -o "Dir::Cache=$W/cache" -o Dir::State::status=/var/lib/dpkg/status -o APT::Sandbox::User=root)
  apt-get "${ALT[@]}" update -qq >&2
  (cd "$W" && apt-get "${ALT[@]}" download -qq victoria-metrics >&2)
  dpkg-deb -x "$W"/victoria-metrics_*.deb "$CACHE/victoria-metrics"
  rm -rf "$W"
fi
echo "$BIN"
