#!/usr/bin/env bash
# LibriSpeech recipe: prepare (download + manifests) -> train -> evaluate. Rerun to resume any stage.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/librispeech/config.sh

asr prepare $TRAIN_SUBSETS $DEV_SUBSET $TEST_SUBSETS --dest "$DATA"
L="$DATA/LibriSpeech"
train_dirs=(); for s in $TRAIN_SUBSETS; do train_dirs+=("$L/$s"); done

args=(--train "${train_dirs[@]}" --dev "$L/$DEV_SUBSET" --out "$EXP" --epochs "$EPOCHS"
      --hidden "$HIDDEN" --layers "$LAYERS" --batch-seconds "$BATCH_SECONDS" --lr "$LR"
      --warmup-steps "$WARMUP_STEPS" --num-workers "$NUM_WORKERS")
if [ "$NPROC" -gt 1 ]; then
    torchrun --standalone --nproc-per-node "$NPROC" -m asr.training.train "${args[@]}"
else
    asr train "${args[@]}"
fi

# word times: subtract the model's emission delay (needs espeak-ng and flite; see asr/training/timing.py)
asr calibrate-timing "$EXP/best.pt" || echo "word-timing calibration skipped: word times will run late"

for s in $TEST_SUBSETS; do
    asr eval --model "$EXP/best.pt" "$L/$s" --output "$EXP/errors-$s.jsonl"
done
