#!/usr/bin/env bash
# Builds the demo and serves it at http://127.0.0.1:${PORT:-8080}/ (everything local).
set -euo pipefail
cd "$(dirname "$0")/.."
bash web/build.sh
exec python3 web/server.py --port "${PORT:-8080}"
