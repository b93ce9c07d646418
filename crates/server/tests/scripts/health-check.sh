#!/usr/bin/env bash
# An operator's health check, written as scripts and the etcd docs write
# it: endpoint health, endpoint status and member list as tables, then a
# put/get/del round trip. ENDPOINTS may be written with or without scheme.
set -euo pipefail
: "${ENDPOINTS:?set ENDPOINTS, e.g. http://127.0.0.1:2379,http://127.0.0.1:12379}"
export ETCDCTL_API=3
ctl() { etcdctl --endpoints="$ENDPOINTS" --dial-timeout=3s --command-timeout=10s "$@"; }

ctl endpoint health --write-out=table
ctl endpoint status --write-out=table
ctl member list --write-out=table
key="health-check/$$"
[ "$(ctl put "$key" ok)" = OK ]
[ "$(ctl get "$key" --print-value-only)" = ok ]
[ "$(ctl del "$key")" = 1 ]
[ -z "$(ctl get "$key")" ]
echo "health check passed"
