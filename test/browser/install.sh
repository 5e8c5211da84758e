#!/usr/bin/env bash
# Install the browser tests' dependency (playwright-core, which drives
# Debian's /usr/bin/chromium: it downloads no browser) into
# test/browser/node_modules from the committed lockfile.  Does nothing when
# it is there already.
#
#   bash test/browser/install.sh
set -euo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "node and npm are needed for the browser tests (test/install-deps.sh installs them)" >&2
	exit 1
fi
if [ -f "$dir/node_modules/playwright-core/package.json" ]; then
	exit 0
fi
cd "$dir"
if [ -f package-lock.json ]; then
	npm ci --no-audit --no-fund --loglevel=error
else
	npm install --no-audit --no-fund --loglevel=error
fi
# the tests run as an unprivileged user: node_modules must be readable by all
chmod -R a+rX "$dir/node_modules"
node -e "require('$dir/node_modules/playwright-core')" ||
	{ echo "playwright-core did not install" >&2; exit 1; }
