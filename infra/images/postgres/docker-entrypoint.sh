#!/bin/sh
# Honours POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB like the official image.
set -eu
if [ "${1:-}" = "postgres" ]; then
    shift
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        pwfile=$(mktemp)
        printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
        chown postgres "$pwfile"
        runuser -u postgres -- initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$pwfile"
        echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        if [ "$db" != "postgres" ]; then
            runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
            runuser -u postgres -- createdb -U "$user" "$db"
            runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        fi
        echo "PostgreSQL init process complete; ready for start up."
    fi
    exec runuser -u postgres -- postgres -D "$PGDATA" "$@"
fi
exec "$@"
