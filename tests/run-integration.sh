#!/usr/bin/env bash
# Runs the pytest integration suite against the binaries in $WSPUSH_BIN.
# Debian's python3 carries pytest and websockets; a python3 earlier on PATH
# may not, so the system interpreter is named explicitly.
set -u
cd "$(dirname "$0")/integration"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "$@"
