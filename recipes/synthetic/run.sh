#!/usr/bin/env bash
# Generate the synthetic multi-voice corpus (LibriSpeech layout). Resumable: rerun to finish.
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/synthetic/config.sh
python -m asr.synthesize "$OUT" --hours-train "$HOURS_TRAIN" --hours-dev "$HOURS_DEV" \
    --hours-test "$HOURS_TEST" --seed "$SEED" --jobs "$JOBS" --engines "$ENGINES" "$@"
