#!/usr/bin/env bash
# Synthetic recipe: synthesize the corpus -> train -> fine-tune with channel/reverb augmentation ->
# fine-tune on pitch-variant voices -> fine-tune with Kokoro voices added -> fine-tune with blended
# Kokoro voices and flite awb (+ look-ahead) -> four more fine-tunes averaged -> calibrate word timing ->
# evaluate on held-out voices.
# Every stage resumes: rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/synthetic/config.sh

synth() {  # later options win: a stage may pass its own --engines
    python -m asr.training.synthesize --hours-train "$HOURS_TRAIN" --hours-dev "$HOURS_DEV" \
        --hours-test "$HOURS_TEST" --seed "$SEED" --jobs "$JOBS" --engines "$ENGINES" "$@"
}
synth "$OUT"

train() {
    if [ "$NPROC" -gt 1 ]; then
        # one thread per process, data loaded in-process: the cores go to the model
        torchrun --standalone --nproc-per-node "$NPROC" -m asr.training.train "$@" --num-workers 0
    else
        asr train "$@" --num-workers 1
    fi
}
common=(--dev "$OUT/dev" --batch-seconds "$BATCH_SECONDS" --freq-warp "$FREQ_WARP")
room=(--warmup-steps 100 --eq-prob "$EQ_PROB" --reverb-prob "$REVERB_PROB")

train "${common[@]}" --train "$OUT/train" --out "$EXP" --epochs "$EPOCHS" --hidden "$HIDDEN" --layers "$LAYERS" \
    --seed "$SEED"
model="$EXP/best.pt"
if [ "$FT_EPOCHS" -gt 0 ]; then
    train "${common[@]}" "${room[@]}" --train "$OUT/train" --out "$EXP/finetune" --init "$model" \
        --epochs "$FT_EPOCHS" --lr "$FT_LR" --seed "$((SEED + 1))"
    model="$EXP/finetune/best.pt"
fi
if [ "$PV_EPOCHS" -gt 0 ]; then
    synth "$OUT_PV" --pitch-variants  # dev/test are the same as in $OUT
    train "${common[@]}" "${room[@]}" --train "$OUT_PV/train" --out "$EXP/pitch" --init "$model" \
        --epochs "$PV_EPOCHS" --lr "$PV_LR" --seed "$((SEED + 2))"
    model="$EXP/pitch/best.pt"
fi
test="$OUT"
if [ "$KOKORO_EPOCHS" -gt 0 ]; then
    synth "$OUT_KOKORO" --pitch-variants --engines "$ENGINES,kokoro"  # same sentences and dev as $OUT
    train "${common[@]}" "${room[@]}" --train "$OUT_KOKORO/train" --out "$EXP/kokoro" --init "$model" \
        --epochs "$KOKORO_EPOCHS" --lr "$KOKORO_LR" --seed "$((SEED + 3))"
    model="$EXP/kokoro/best.pt"
    test="$OUT_KOKORO"  # its test set adds the held-out Kokoro voice
fi
if [ "$AWB_EPOCHS" -gt 0 ]; then
    synth "$OUT_BLENDS" --hours-train "$BLENDS_HOURS" --pitch-variants --kokoro-blends --engines "$ENGINES,kokoro"
    synth "$OUT_AWB" --hours-train "$AWB_HOURS" --engines flite --train-voices flite:awb
    train "${common[@]}" "${room[@]}" --train "$OUT_BLENDS/train" "$OUT_AWB/train" --out "$EXP/awb" --init "$model" \
        --epochs "$AWB_EPOCHS" --lr "$AWB_LR" --warmup-steps 50 --lookahead "$LOOKAHEAD" --seed "$((SEED + 4))"
    stage4="$model"
    model="$EXP/awb/best.pt"
    test="$OUT_BLENDS"  # the same test set as $OUT_KOKORO's
    if [ "$SOUP_EPOCHS" -gt 0 ]; then
        # Stage 6: four more fine-tunes of the same lineage, then the mean of their weights and stage 5's.
        synth "$OUT_FOREIGN" --hours-train "$FOREIGN_HOURS" --engines festival --foreign-diphones \
            --train-voices "$FOREIGN_VOICES"
        asr revoice "$OUT_BLENDS/train" "$OUT_AWB/train" --out "$OUT_WORLD/train" --hours "$WORLD_HOURS" \
            --seed "$SEED" --jobs "$JOBS"
        # stage 5's options and training data; each run adds its data, init, lr and seed
        again=("${common[@]}" "${room[@]}" --warmup-steps 50 --epochs "$SOUP_EPOCHS" --lookahead "$LOOKAHEAD"
               --train "$OUT_BLENDS/train" "$OUT_AWB/train")
        from5=(--init "$model" --lr "$SOUP_LR" --seed "$((SEED + 5))")
        train "${again[@]}" "${from5[@]}" --out "$EXP/more"
        train "${again[@]}" "$OUT_FOREIGN/train" "${from5[@]}" --out "$EXP/foreign"
        train "${again[@]}" "$OUT_FOREIGN/train" --init "$stage4" --lr "$AWB_LR" --seed "$((SEED + 4))" \
            --out "$EXP/foreign4"
        train "${again[@]}" "$OUT_WORLD/train" "${from5[@]}" --out "$EXP/world"
        asr average "$model" "$EXP"/{more,foreign,foreign4,world}/best.pt -o "$EXP/soup.pt"
        model="$EXP/soup.pt"
    fi
fi

asr calibrate-timing "$model"
asr eval --model "$model" "$test/test" --groups "$test/SPEAKERS.tsv:engine" --output "$EXP/errors-test.jsonl"
