#!/usr/bin/env bash
# Set up and run the shop locally: install packages, build and install the
# extension, start a cluster with pg_cron, load demo data, show the flow.
#
#   bash demo/quickstart.sh          (as root on Debian 12)
#
# The cluster keeps running afterwards; connect with the psql line printed
# at the end, stop it with: bash test/cluster.sh stop /var/tmp/shop-demo
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${SHOP_DEMO_DIR:-/var/tmp/shop-demo}
port=${SHOP_DEMO_PORT:-5433}

bash "$root/test/install-deps.sh"
export PATH="$(pg_config --bindir):$PATH"
make -C "$root" -s
make -C "$root" -s install

bash "$root/test/cluster.sh" stop "$dir"
bash "$root/test/cluster.sh" start "$dir" "$port"
psql=(psql -X -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)

"${psql[@]}" -c "DROP EXTENSION IF EXISTS shop CASCADE" \
	-c "CREATE EXTENSION IF NOT EXISTS pg_cron" \
	-c "CREATE EXTENSION shop" \
	-f "$root/demo/demo_data.sql"
"${psql[@]}" -c "SELECT shop.shop_schedule_expiry('* * * * *') AS expiry_job"
"${psql[@]}" -f "$root/demo/demo_flow.sql"

cat <<MSG

The shop is running (pg_cron releases expired orders every minute).
  psql -h $dir -p $port -U postgres -d postgres
  stop:  bash $root/test/cluster.sh stop $dir
MSG
