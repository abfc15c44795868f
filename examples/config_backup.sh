#!/usr/bin/env bash
# Back up, download and update a running trio-router's config over its management API.
#
#   examples/config_backup.sh backup            # the server copies its config to .backups/
#   examples/config_backup.sh get FILE          # save the config as it is on disk (secrets masked)
#   examples/config_backup.sh update FILE       # validate and write FILE as the new config
#
# ROUTER_URL (default http://127.0.0.1:3456) and ADMIN_KEY (or, while the server has no ADMIN_KEY,
# its APIKEY) come from the environment. A file saved with `get` can be edited and sent back with
# `update`: each masked secret left where it was keeps its real value. The server keeps running
# its old config until restarted.
set -euo pipefail

url="${ROUTER_URL:-http://127.0.0.1:3456}"
key="${ADMIN_KEY:-${ROUTER_API_KEY:-}}"
auth=()
if [[ -n "$key" ]]; then
  auth=(-H "x-api-key: $key")
fi

# --fail-with-body: a 4xx or 5xx exits non-zero and still prints the router's error message.
api() { curl --silent --show-error --fail-with-body "${auth[@]}" "$@"; }

case "${1:-}" in
  backup)
    api -X POST "$url/api/config/backup"
    echo
    ;;
  get)
    api "$url/api/config" -o "${2:?usage: $0 get FILE}"
    echo "saved to $2"
    ;;
  update)
    api -X POST "$url/api/config" -H 'content-type: application/json' \
      --data-binary "@${2:?usage: $0 update FILE}"
    echo
    ;;
  *)
    echo "usage: $0 backup | get FILE | update FILE" >&2
    exit 2
    ;;
esac
