#!/usr/bin/env bash
# Install Debian's PostgreSQL, start it on loopback only, and print the URL the store tests use
# (MPQ_TEST_POSTGRES_URL). Idempotent: a second call reuses the running server.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /usr/lib/postgresql ]; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
# Loopback only: nothing outside this machine can reach the test server.
sed -i "s/^#\?listen_addresses.*/listen_addresses = '127.0.0.1'/" "/etc/postgresql/$version/main/postgresql.conf"
pg_ctlcluster "$version" main start >/dev/null 2>&1 || pg_ctlcluster "$version" main status >/dev/null
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='mpq'\" | grep -q 1 || psql -q -c \"CREATE ROLE mpq LOGIN PASSWORD 'mpq' CREATEDB\""
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='mpq_test'\" | grep -q 1 || createdb -O mpq mpq_test"
echo "postgresql+psycopg://mpq:mpq@127.0.0.1:5432/mpq_test"
