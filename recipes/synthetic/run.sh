#!/usr/bin/env bash
# Synthetic recipe: synthesize the corpus -> train -> calibrate word timing -> evaluate on held-out voices.
# Every stage resumes: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/synthetic/config.sh

python -m asr.synthesize "$OUT" --hours-train "$HOURS_TRAIN" --hours-dev "$HOURS_DEV" \
    --hours-test "$HOURS_TEST" --seed "$SEED" --jobs "$JOBS" --engines "$ENGINES"

args=(--train "$OUT/train" --dev "$OUT/dev" --out "$EXP" --epochs "$EPOCHS" --hidden "$HIDDEN"
      --layers "$LAYERS" --batch-seconds "$BATCH_SECONDS" --freq-warp "$FREQ_WARP" --seed "$SEED")
if [ "$NPROC" -gt 1 ]; then
    # one thread per process, data loaded in-process: the cores go to the model
    torchrun --standalone --nproc-per-node "$NPROC" -m asr.train "${args[@]}" --num-workers 0
else
    asr train "${args[@]}" --num-workers 1
fi

asr calibrate-timing "$EXP/best.pt"
asr eval --model "$EXP/best.pt" "$OUT/test" --groups "$OUT/SPEAKERS.tsv:engine" --output "$EXP/errors-test.jsonl"
