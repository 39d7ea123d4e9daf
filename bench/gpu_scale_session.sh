#!/usr/bin/env bash
# Distillation on several GPUs (issue 16, docs/scale.md), on the lent 2-GPU H200 machine in ONE device call from the
# repository root: `bash bench/gpu_scale_session.sh` (timeout_s 540; nothing to carry: the model is random weights of
# Qwen3-4B's shape and the data synthetic token ids, both made there; only torch, transformers, pyarrow from the image).
# Within BUDGET seconds (default 450, compiling included), each step under `timeout`:
#   1. torchrun --nproc-per-node 1 bench/bench_distill_scale.py at L1 tokens (8192): the 1-GPU baseline, run sharded
#      like the 2-GPU one. Decoder layers eager by default (FlexAttention is compiled either way): no minutes of
#      compiling in an 8-minute call; COMPILE=--compile compiles them, and if that run fails for a reason other than
#      memory, both runs go eager.
#   2. torchrun --nproc-per-node 2 at L2 (8192 ... 131072) in increasing order until one does not fit or the
#      budget is near: 2-GPU tokens/s, peak memory per GPU, the longest context that fits.
#   3. the table (bench_distill_scale.py --report): the lines to read are the table, "scaling at 8192 tokens" and
#      "longest context".
# Writes to $OUT: scale_1.json, scale_2.json, scale.json (merged, with the scaling figures), scale_table.md, the logs.
# CPU rehearsal of this very script (gloo, tiny shape):
#   OUT=/tmp/scale SHAPE=tiny DEVICE=cpu L1=512 L2="512 1024" FINAL=128 bash bench/gpu_scale_session.sh
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the machine's rule: no NVLink multicast
OUT=${OUT:?set OUT to the folder for the results}
SHAPE=${SHAPE:-qwen3-4b} DEVICE=${DEVICE:-cuda} L1=${L1:-8192} L2=${L2:-8192 16384 32768 65536 131072} FINAL=${FINAL:-256} BUDGET=${BUDGET:-450}
COMPILE=${COMPILE:---no-compile}
mkdir -p "$OUT"
start=$SECONDS
left() { echo $(( BUDGET - (SECONDS - start) )); }
quiet() { grep -v "Warning\|warnings.warn\|^  warn\|FutureWarning"; }
bench() {  # bench NPROC LIMIT_S NAME ARGS...: one launch of the benchmark under torchrun, its log in $OUT/NAME.log
  local nproc=$1 limit=$2 name=$3
  shift 3
  [ "$limit" -ge 30 ] || { echo "== $name: skipped, ${limit} s left"; return; }  # (timeout 0 would mean no limit)
  timeout -k 15 "$limit" python3 -m torch.distributed.run --standalone --nproc-per-node "$nproc" bench/bench_distill_scale.py \
    --shape "$SHAPE" --device "$DEVICE" --final "$FINAL" $COMPILE --out "$OUT/$name.json" "$@" 2>&1 | quiet | tee "$OUT/$name.log"
}
ran() { python3 -c "import json, sys; sys.exit(0 if any(r['status'] == 'ok' for r in json.load(open(sys.argv[1]))['runs']) else 1)" "$1" 2>/dev/null; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'GPUs', torch.cuda.device_count())"

bench 1 $(( $(left) * 45 / 100 )) scale_1 --lengths $L1 --deadline 1e9
if [ "$COMPILE" = --compile ] && ! ran "$OUT/scale_1.json" && ! grep -q "out of memory" "$OUT/scale_1.log"; then
  echo "== the compiled 1-GPU run failed: both runs again with eager decoder layers (FlexAttention stays compiled)"
  COMPILE=--no-compile
  bench 1 $(( $(left) * 35 / 100 )) scale_1 --lengths $L1 --deadline 1e9
fi
limit=$(( $(left) - 15 ))
bench 2 $limit scale_2 --lengths $L2 --deadline $(( limit - 40 ))  # the deadline counts from after the imports
echo "== $(( SECONDS - start )) s in all"
python3 bench/bench_distill_scale.py --report "$OUT/scale_1.json" "$OUT/scale_2.json" --out "$OUT/scale.json" | tee "$OUT/scale_table.md"
