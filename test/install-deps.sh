#!/usr/bin/env bash
# Install what building, running and testing shop needs on Debian 12.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

packages=(
	build-essential
	postgresql-15
	postgresql-server-dev-15
	postgresql-15-cron
	postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	libcurl4-openssl-dev
	# shop-httpd (src/http/): HTTP server, libpq, JSON, HMAC-SHA256
	libmicrohttpd-dev
	libpq-dev
	libjansson-dev
	libssl-dev
	# make bench's HTTP scenario
	wrk
	# the self-signed certificate of the TLS verification test (test/t/015)
	openssl
	# the storefront's browser tests (test/browser/, driven by playwright-core;
	# the browser comes from Debian, never downloaded)
	chromium
	# Korean labels in the browser tests' screenshots
	fonts-nanum
)

# Node.js runs the tests' HTTP receiver (it verifies deliveries with the
# reference standardwebhooks package); the machine usually has it already.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "missing packages: ${missing[*]}; run as root to install them" >&2
	exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
