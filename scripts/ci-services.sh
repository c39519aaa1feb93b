#!/usr/bin/env bash
# Start PostgreSQL, MariaDB, Redis and RabbitMQ for the database and queue tests if they are
# not running, and wait until each answers (at most ~60 s each). Idempotent; safe to run
# repeatedly.
#   PostgreSQL: 127.0.0.1:5432, user postgres (trust auth)   MariaDB: 127.0.0.1:3306, root
#   Redis: 127.0.0.1:6379                                    RabbitMQ: 127.0.0.1:5672, guest
set -euo pipefail

wait_for() {  # name, command...
    local name=$1; shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then echo "$name is up"; return 0; fi
        sleep 1
    done
    echo "$name did not come up" >&2
    return 1
}

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q; }
maria_ready() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping; }

if ! pg_ready; then
    for version in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
fi
wait_for PostgreSQL pg_ready

if ! maria_ready; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
fi
wait_for MariaDB maria_ready

redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
rabbit_ready() { timeout 10 rabbitmq-diagnostics -q check_port_connectivity; }

if ! redis_ready; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis redis_ready

if ! rabbit_ready; then
    rabbitmq-server -detached
fi
wait_for RabbitMQ rabbit_ready
