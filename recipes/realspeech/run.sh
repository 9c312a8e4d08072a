#!/usr/bin/env bash
# Real-speech recipe: the Asterisk test set -> fine-tune the synthetic-voice model on the real speech (R1)
# -> synthetic voices reading Gutenberg sentences -> R1 widened and trained on real + synthetic speech (M1)
# -> more steps with frequency warping and channel augmentation (M2, bundled) -> calibrate word timing ->
# the Gutenberg word LM (dev/test sentences removed) -> tune its weights on dev -> evaluate everything
# beside PocketSphinx. Every stage resumes or is skipped when its output exists.
# Needs `pip install -e '.[train,dev,piper]'` and .ci/install's apt packages (ffmpeg, the Asterisk prompts,
# KenLM's build deps, espeak/festival/flite for the voices and timing calibration).
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/realspeech/config.sh
mkdir -p "$DATA" "$EXP"

# 1. Held-out sets: the Asterisk prompts (a voice and domain no training set has), spelled out
[ -f "$DATA/asterisk/asterisk.jsonl" ] || asr prepare asterisk --dest "$DATA"
python recipes/realspeech/exclusions.py "$DATA/exclude"  # Asterisk prompt texts, synthetic dev+test sentences
held_out=("$REAL/dev.jsonl" "$DATA/asterisk/asterisk.jsonl" assets/real/alsa-sounds.jsonl
          "$DATA/exclude/synthetic-dev-test.txt")

# 2. Acoustic model
# 2a. R1: fine-tune the synthetic-voice model on all real training speech
if [ -n "$INIT" ] && [ ! -f "$INIT" ]; then
    git show e653e27:assets/model.pt > "$INIT.tmp" && mv "$INIT.tmp" "$INIT"
fi
init=(); [ -n "$INIT" ] && init=(--init "$INIT")
asr train --train "$REAL/train.jsonl" --dev "$REAL/dev.jsonl" --out "$EXP/r1" "${init[@]}" \
    --exclude "${held_out[@]}" --epochs "$EPOCHS" --lr "$LR" --batch-seconds "$BATCH_SECONDS" \
    --eq-prob "$EQ_PROB" --reverb-prob "$REVERB_PROB" --precision "$PRECISION" --seed "$SEED"

# 2b. Sentences for synthetic voices: Gutenberg lines, every held-out sentence removed
[ -f "$DATA/tts-sentences.txt" ] || python recipes/realspeech/tts_text.py "$GUTENBERG" "$DATA/tts-sentences.txt" \
    --fraction "$TTS_FRACTION" --exclude "${held_out[@]}" "$DATA/exclude/asterisk-prompts.txt"

# 2c. Synthetic voices reading them (resumable): eSpeak NG / Festival / Flite, and Piper (asr[piper])
asr synth "$DATA/synthetic" --text "$DATA/tts-sentences.txt" --hours-train "$SYNTH_HOURS" --hours-dev 0 \
    --hours-test 0 --engines espeak,festival,flite --pitch-variants --jobs "$(nproc)" --no-progress
asr synth "$DATA/piper" --text "$DATA/tts-sentences.txt" --hours-train "$PIPER_HOURS" --hours-dev 0 \
    --hours-test 0 --engines piper --seed 1 --jobs "$(nproc)" --no-progress

# 2d-2e train on the same mix: real + synthetic speech, real noise, simulated rooms
# shellcheck disable=SC2206
mix=(--train "$REAL/train.jsonl" "$DATA/synthetic/train" "$DATA/piper/train" --dev "$REAL/dev.jsonl"
     --exclude "${held_out[@]}" "$DATA/exclude/asterisk-prompts.txt" --repeat $REPEAT --epochs 8
     --batch-seconds "$BATCH_SECONDS" --reverb-prob "$REVERB_PROB" --rir-bank "$DATA/rirs.npz" --noise "$NOISE"
     --precision "$PRECISION" --num-workers 1)

# 2d. M1: R1 widened to $HIDDEN units
asr train "${mix[@]}" --out "$EXP/mix" --init "$EXP/r1/best.pt" --hidden "$HIDDEN" --max-steps "$MIX_STEPS" \
    --lr "$MIX_LR" --eq-prob "$EQ_PROB" --codec-prob "$CODEC_PROB" --seed "$MIX_SEED"

# 2e. The bundled model: 2d's last checkpoint (full dev with the LM chose it over best.pt: assets/MODEL.md)
# trained further at a lower rate with frequency warping (VTLP) and more channel and codec augmentation
asr train "${mix[@]}" --out "$EXP/more" --init "$EXP/mix/last.pt" --max-steps "$MORE_STEPS" --lr "$MORE_LR" \
    --warmup-steps 100 --freq-warp "$FREQ_WARP" --eq-prob "$MORE_EQ_PROB" --codec-prob "$MORE_CODEC_PROB" \
    --seed "$MORE_SEED"
model="$EXP/model.pt"
# Its last checkpoint; `asr average` of one checkpoint is that model, as a model file.
[ -f "$model" ] || { asr average "$EXP/more/last.pt" -o "$model.tmp.pt" && asr calibrate-timing "$model.tmp.pt" \
    && mv "$model.tmp.pt" "$model"; }

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
