#!/usr/bin/env bash
# Run Claude Code through trio-router: every argument is passed to `claude`.
#
#   ROUTER_API_KEY=your-router-APIKEY examples/claude_code.sh            # interactive
#   examples/claude_code.sh -p "explain this repository"                # one turn, printed
#
# ROUTER_URL defaults to http://127.0.0.1:3456. Inside Claude Code, `/model provider,model`
# picks a route for the session; otherwise the router's `Router` rules decide.
set -euo pipefail

export ANTHROPIC_BASE_URL="${ROUTER_URL:-http://127.0.0.1:3456}"
# Claude Code sends this as x-api-key; any value works while the router has no APIKEY.
export ANTHROPIC_API_KEY="${ROUTER_API_KEY:-no-key}"
# Nothing but the Messages API goes out: no telemetry, error reports or update checks that
# would try to reach Anthropic directly.
export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1

exec claude "$@"
