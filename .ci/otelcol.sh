#!/usr/bin/env bash
# Prints the path of a real OpenTelemetry Collector (`rig-otelcol`: OTLP receiver over gRPC and HTTP —
# protobuf and JSON —, batch processor, debug exporter). No Debian release ships a collector
# binary and the Go proxy is out of reach, so it is built offline from Debian sid's source packages
# (golang-opentelemetry-collector-dev and its golang-*-dev dependencies, plus sid's Go toolchain, which is
# static and runs on bookworm), fetched with a private apt state (system apt is not touched). The binary
# is cached outside the repository; the ~3 GB scratch tree is removed. Everything but the path goes to
# stderr. Bump RIG_OTELCOL_VERSION when main.go changes so that old caches are rebuilt.
set -euo pipefail
CACHE=${VM_METRICS_CI_CACHE:-/var/cache/vm-metrics-ci}
OUT="$CACHE/otelcol"
BIN="$OUT/rig-otelcol"
RIG_OTELCOL_VERSION=1
if [ -x "$BIN" ] && [ "$(cat "$OUT/version" 2>/dev/null)" = "$RIG_OTELCOL_VERSION" ]; then echo "$BIN"; exit 0; fi

W="$OUT/work"
rm -rf "$W" && mkdir -p "$W/lists/partial" "$W/cache/archives/partial" "$W/debs"
trap 'rm -rf "$W"' EXIT
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
echo "deb ${MIRROR:-http://deb.debian.org/debian} sid main" > "$W/sources.list"
ALT=(-o "Dir::Etc::sourcelist=$W/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$W/lists"
     -o "Dir::Cache=$W/cache" -o Dir::State::status=/var/lib/dpkg/status -o APT::Sandbox::User=root)
apt-get "${ALT[@]}" update -qq >&2
GOPKG=$(apt-cache "${ALT[@]}" depends golang-go | sed -n 's/.*Depends: \(golang-1\.[0-9]*-go\)$/\1/p' | head -1)
DEPS=$(apt-cache "${ALT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances golang-opentelemetry-collector-dev | grep -E '^golang-.*-dev$' | sort -u)
# shellcheck disable=SC2086 # DEPS is a list of package names
(cd "$W/debs" && apt-get "${ALT[@]}" download -qq "$GOPKG" "${GOPKG%-go}-src" $DEPS >&2)
mkdir -p "$W/root" && for f in "$W"/debs/*.deb; do dpkg-deb -x "$f" "$W/root"; done
GOROOT=$(ls -d "$W"/root/usr/lib/go-1.*)
mkdir -p "$W/gopath/src/rigotelcol"
cat > "$W/gopath/src/rigotelcol/main.go" <<'GO'
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func components() (otelcol.Factories, error) {
	var f otelcol.Factories
	var err error
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
		return f, err
	}
	if f.Processors, err = otelcol.MakeFactoryMap[processor.Factory](batchprocessor.NewFactory()); err != nil {
		return f, err
	}
	if f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](debugexporter.NewFactory()); err != nil {
		return f, err
	}
	f.Telemetry = otelconftelemetry.NewFactory()
	return f, nil
}

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "rig-otelcol", Description: "minimal OTLP receiver", Version: "debian-sid"},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{ResolverSettings: confmap.ResolverSettings{
			ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory(), yamlprovider.NewFactory()},
		}},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		log.Fatal(err)
	}
}
GO
(cd "$W/gopath" && env GOROOT="$GOROOT" GO111MODULE=off GOPATH="$W/gopath:$W/root/usr/share/gocode" GOPROXY=off \
   GOFLAGS= GOCACHE="$W/gocache" CGO_ENABLED=0 GOTOOLCHAIN=local "$GOROOT/bin/go" build -o "$BIN.tmp" rigotelcol >&2)
mv "$BIN.tmp" "$BIN" && echo "$RIG_OTELCOL_VERSION" > "$OUT/version"
"$BIN" --version >&2
echo "$BIN"
