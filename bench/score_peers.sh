#!/usr/bin/env bash
# The peers (README "Peers") beside the default model and every baseline, on growing seeded samples of the
# authored and concatenation test splits, so a shared 2-core machine gives the largest sample it can in the time it
# has. Each method group runs as its own `semanticseg evaluate` process (in parallel, at `nice`), through the
# stages below in order; every stage writes its own results, and `evaluate`'s samples are nested (a larger one holds
# every smaller one), so with the shared embedding store a stage pays only for the documents it adds.
# Targets are tuned on a seeded sample of TUNE validation documents (the same for every method and stage).
#
#   bash bench/score_peers.sh                       # all stages; then merge what finished:
#   python bench/merge_evaluations.py runs/eval-peers/authored-89 runs/eval-peers/authored-89-*
#
# STAGES ("benchmark test-documents" pairs), TUNE, STORE and OUT can be set in the environment.
set -euo pipefail
TUNE=${TUNE:-8}
STORE=${STORE:-runs/embeddings.sqlite}
OUT=${OUT:-runs/eval-peers}
STAGES=${STAGES:-"authored:30 concat:12 authored:60 concat:24 authored:89 concat:37"}
GROUPS_=("chonkie-semantic" "langchain-semantic" "llamaindex-semantic"
         "segmenter,embedding,texttiling,fixed,paragraph,recursive,structure,chonkie-recursive")
mkdir -p "$OUT"

run_group() {  # one method group through every stage, skipping stages already written
  local methods=$1 name=${1%%,*} stage bench n
  for stage in $STAGES; do
    bench=${stage%%:*} n=${stage##*:}
    [ -f "$OUT/$bench-$n-$name/results.json" ] && continue
    nice -n 10 semanticseg evaluate --data "bench_data/$bench" --out "$OUT/$bench-$n-$name" --model default \
      --methods "$methods" --tune-documents "$TUNE" --test-documents "$n" --embedding-cache "$STORE" \
      >> "$OUT/$name.log" 2>&1
    echo "$(date -u +%H:%M:%S) $name $bench $n done" >> "$OUT/progress.log"
  done
}

for methods in "${GROUPS_[@]}"; do
  run_group "$methods" &
done
wait
