#!/usr/bin/env bash
# Quick start, command 1: set up and run the bot's main job on embedded defaults (SQLite).
# With TELEGRAM_BOT_TOKEN set (environment or .env) it runs the real bot; without one, the offline
# try-it mode: the real bot against local stand-ins, chatting with you in this terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -n "${TELEGRAM_BOT_TOKEN:-}" ] || grep -qs '^TELEGRAM_BOT_TOKEN=.\+' .env; then
  exec .venv/bin/onboarding-bot run
fi
exec .venv/bin/onboarding-bot try "$@"
