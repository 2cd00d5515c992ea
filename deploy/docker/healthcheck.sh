#!/bin/bash
# healthcheck [PATH] [PORT] — exits 0 when http://127.0.0.1:PORT/PATH answers
# 200 (defaults /readyz, 9090). Used by the images' HEALTHCHECK and by
# docker-compose; it needs only bash, so the enclave image carries no HTTP
# client (curl, wget) for it.
set -eu
path=${1:-/readyz}
port=${2:-9090}
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
status=""
IFS= read -r -t 5 status <&3 || true
case "$status" in
"HTTP/1."?" 200 "*) exit 0 ;;
esac
echo "healthcheck: GET $path on :$port: ${status:-no answer}" >&2
exit 1
