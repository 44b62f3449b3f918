#!/usr/bin/env bash
# Start (and on a fresh machine, install) PostgreSQL, Redis and RabbitMQ on their default ports,
# and install Debian's Chromium for the browser test and nginx for the front's tests.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 1; done; echo "port $1 did not open" >&2; return 1; }
apt_updated=0
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { echo "$1 is missing and this is not root: install $2" >&2; return 1; }
  [ $apt_updated = 1 ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

if ! port_open 6379; then
  need redis-server redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379
fi

if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then need psql postgresql; fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main/pg_hba.conf
  grep -q "^host all all 127.0.0.1/32 trust" "$conf" || sed -i '1i host all all 127.0.0.1/32 trust' "$conf"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_port 5432
fi

if ! port_open 5672; then
  need rabbitmq-server rabbitmq-server
  rabbitmq-server -detached
  wait_port 5672
fi
# Debian's Chromium for the /ui browser test (Playwright drives it; it downloads no browser).
need chromium chromium
# nginx for the front's tests (tests/test_front.py, tests/test_serving.py): they start it themselves
# on a loopback port with a temporary prefix. Debian's package may start its own server on :80.
if ! command -v nginx >/dev/null 2>&1; then
  need nginx nginx-light
  if [ -f /run/nginx.pid ]; then nginx -s stop || true; fi
fi
# wrk for the origin bench's smoke test (tests/test_bench_smoke.py), which checks hits never reach the app.
need wrk wrk

echo "services: redis :6379, postgresql :5432, rabbitmq :5672 are up"
