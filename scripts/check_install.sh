#!/usr/bin/env bash
# Proves the README's install line: runs its pip and corpus steps, read from README.md itself, in a NEW
# virtualenv (no system site packages), then a short offline build, release and validate in it. The dev
# environment has every extra, so only a bare venv shows a dependency the README's extras miss.
# Reuses pip's cache; the venv and work folder are temporary. Usage: bash scripts/check_install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
line=$(grep -m1 '^pip install torch' README.md) || { echo "check_install: no install line in README.md" >&2; exit 1; }
install=$(sed 's/ && semanticseg .*//' <<<"$line")  # the install steps, without the main job that follows them
case "$install" in *semanticseg\ *) echo "check_install: cannot split the README line: $line" >&2; exit 1 ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m venv "$tmp/venv"
# shellcheck disable=SC1091
source "$tmp/venv/bin/activate"
unset PYTHONPATH  # the venv must import only what the install line put there
# Skip compiling every installed module to bytecode (torch and transformers alone are thousands of files):
# the check imports a few of them, which Python compiles on first import.
export PIP_NO_COMPILE=1
echo "check_install: $install"
eval "$install" >"$tmp/install.log" 2>&1 || { tail -30 "$tmp/install.log" >&2; exit 1; }
echo "check_install: installed in $((SECONDS - start)) s"

# The main job, short: two documents, no LLM (structure + similarity), then the release and its checks.
semanticseg build --category code --limit 2 --annotators structure,similarity --work "$tmp/work"
semanticseg release --work "$tmp/work" --out "$tmp/release"
semanticseg validate "$tmp/release"
semanticseg segment README.md --method recursive >/dev/null   # semchunk: the recursive baseline
semanticseg segment README.md >/dev/null                     # the default segmenter shipped in the package
python -c "from semanticseg import Segmenter; print(len(Segmenter.load().segment(open('README.md').read())), 'blocks')"
python -c "import label_studio_sdk"                          # annotate push/pull
echo "check_install: README install + short build passed in $((SECONDS - start)) s"
