#!/usr/bin/env bash
# Install the Label Studio server into its own virtualenv (its pins clash with ours), once.
# Same code path as `semanticseg annotate serve` on first use; the tests' fixture needs it installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "from semanticseg.servers.labelstudio_server import ensure_installed; print(ensure_installed())"
