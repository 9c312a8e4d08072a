#!/usr/bin/env bash
# Real-speech recipe: the Asterisk test set -> fine-tune the synthetic-voice model on the real speech ->
# calibrate word timing -> the Gutenberg word LM (dev/test sentences removed) -> tune its weights on dev ->
# evaluate everything beside PocketSphinx. Every stage resumes or is skipped when its output exists.
# Needs `pip install -e '.[train,dev]'` and .ci/install's apt packages (ffmpeg, the Asterisk prompts, KenLM's
# build deps, espeak/festival/flite for timing calibration).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/realspeech/config.sh
mkdir -p "$DATA" "$EXP"

# 1. Held-out sets: the Asterisk prompts (a voice and domain no training set has), spelled out
[ -f "$DATA/asterisk/asterisk.jsonl" ] || asr prepare asterisk --dest "$DATA"
python recipes/realspeech/exclusions.py "$DATA/exclude"  # Asterisk prompt texts, synthetic dev+test sentences
held_out=("$REAL/dev.jsonl" "$DATA/asterisk/asterisk.jsonl" assets/real/alsa-sounds.jsonl
          "$DATA/exclude/synthetic-dev-test.txt")

# 2. Acoustic model: fine-tune the synthetic-voice model on all real training speech
if [ -n "$INIT" ] && [ ! -f "$INIT" ]; then
    git show e653e27:assets/model.pt > "$INIT.tmp" && mv "$INIT.tmp" "$INIT"
fi
init=(); [ -n "$INIT" ] && init=(--init "$INIT")
asr train --train "$REAL/train.jsonl" --dev "$REAL/dev.jsonl" --out "$EXP" "${init[@]}" \
    --exclude "${held_out[@]}" --epochs "$EPOCHS" --lr "$LR" --batch-seconds "$BATCH_SECONDS" \
    --eq-prob "$EQ_PROB" --reverb-prob "$REVERB_PROB" --precision "$PRECISION" --seed "$SEED"
model="$EXP/model.pt"
[ -f "$model" ] || { cp "$EXP/best.pt" "$model.tmp" && asr calibrate-timing "$model.tmp" && mv "$model.tmp" "$model"; }

# 3. The LM: Gutenberg + training transcripts, every held-out sentence removed (LM.md)
lm="$EXP/lm.bin"
if [ ! -f "$lm" ]; then
    include=("$REAL/train.jsonl"); [ -f "$DICT" ] && include+=("$DICT")
    # shellcheck disable=SC2086
    asr lm build --kenlm "$GUTENBERG" "$REAL/train.jsonl" -o "$lm" --order "$ORDER" --prune $PRUNE \
        --vocab-min-count "$VOCAB_MIN_COUNT" --vocab-include "${include[@]}" \
        --exclude "${held_out[@]}" "$DATA/exclude/asterisk-prompts.txt" --exclude-min-words "$EXCLUDE_MIN_WORDS"
fi

# 4. LM weights and beam, tuned on realspeech dev (written to $lm.json, which the decoder reads)
[ -f "$lm.json" ] || asr lm tune --model "$model" --lm "$lm" "$REAL/dev.jsonl" --beam-size "${BEAM:-128}" \
    --lm-weights 0.5 1.0 1.5 2.0 --word-scores -1 0 1 2

# 5. Everything, greedy and with the LM, PocketSphinx beside it
asr eval --model "$model" --lm "$lm" --peer pocketsphinx --groups source \
    "$REAL/dev.jsonl" "$DATA/asterisk/asterisk.jsonl" assets/real/alsa-sounds.jsonl \
    --output "$EXP/errors.jsonl"
echo "bundle with: cp $model assets/model.pt && cp $lm assets/lm.bin && cp ${lm%.bin}.words.txt assets/lm.words.txt && cp $lm.json assets/lm.bin.json"
