#!/usr/bin/env bash
# Install the test receiver's one npm dependency (standardwebhooks, the
# reference Standard Webhooks library) into test/receiver/node_modules.
# Does nothing when it is there already; uses the committed lockfile.
#
#   bash test/receiver/install.sh
set -euo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "node and npm are needed for the test receiver (test/install-deps.sh installs them)" >&2
	exit 1
fi
if [ -f "$dir/node_modules/standardwebhooks/package.json" ] && [ -f "$dir/node_modules/stripe/package.json" ]; then
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
node -e "require('$dir/node_modules/standardwebhooks')" ||
	{ echo "standardwebhooks did not install" >&2; exit 1; }
