# Settings for recipes/synthetic/run.sh; override any of them in the environment.
# The defaults are the ones that trained the synthetic-voice model (docs/synthetic-model.md).
OUT=${OUT:-data/synthetic}             # the corpus
EXP=${EXP:-exp/synthetic}              # checkpoints, history.json, progress.png
HOURS_TRAIN=${HOURS_TRAIN:-12}
HOURS_DEV=${HOURS_DEV:-0.6}
HOURS_TEST=${HOURS_TEST:-0.8}
SEED=${SEED:-0}
JOBS=${JOBS:-$(nproc)}
ENGINES=${ENGINES:-espeak,festival,flite}
# Model and training: 3 x 384 GRU (2.8 M parameters); 2 processes (DDP) x 100 s batches.
HIDDEN=${HIDDEN:-384}
LAYERS=${LAYERS:-3}
EPOCHS=${EPOCHS:-18}
BATCH_SECONDS=${BATCH_SECONDS:-100}    # padded audio seconds per batch and process
FREQ_WARP=${FREQ_WARP:-0.12}           # vocal-tract-length-like warp: few voices, many "speakers"
NPROC=${NPROC:-2}                      # training processes (one per core here)
# Stage 2: fine-tune the stage-1 model (--init) with channel and room augmentation added;
# FT_EPOCHS=0 skips it and the stage-1 model is the result.
FT_EPOCHS=${FT_EPOCHS:-20}
FT_LR=${FT_LR:-1e-3}
EQ_PROB=${EQ_PROB:-0.5}                # random band limits + peaking EQ
REVERB_PROB=${REVERB_PROB:-0.2}        # synthetic room impulse response
# Stage 3: fine-tune the stage-2 model on a second corpus whose flite/festival training chapters
# are spread over 9 more pitch-shifted voices (asr synth --pitch-variants; same dev/test).
# PV_EPOCHS=0 skips it.
OUT_PV=${OUT_PV:-${OUT}-pitch}
PV_EPOCHS=${PV_EPOCHS:-15}
PV_LR=${PV_LR:-7e-4}
# Stage 4: fine-tune the stage-3 model on a corpus that adds Kokoro-82M neural voices (asr synth
# --engines ...,kokoro --pitch-variants; needs pip install 'asr[kokoro]'). Same sentences and dev; test
# gives every 5th chapter to the held-out Kokoro voice. KOKORO_EPOCHS=0 skips it.
OUT_KOKORO=${OUT_KOKORO:-${OUT}-kokoro}
KOKORO_EPOCHS=${KOKORO_EPOCHS:-14}
KOKORO_LR=${KOKORO_LR:-7e-4}
# Stage 5: fine-tune the stage-4 model on two more corpora: BLENDS_HOURS of train with 18 blended
# Kokoro voices (asr synth --kokoro-blends --pitch-variants --engines ...,kokoro) and AWB_HOURS of
# flite's awb, dev's only flite voice, moved into training (asr synth --engines flite --train-voices
# flite:awb; it speaks train sentences only). LOOKAHEAD > 0 widens the model's look-ahead to that many
# 30 ms steps (tried: 3 did not pay in 4 epochs, so the bundled model stays causal). Needs asr[kokoro];
# AWB_EPOCHS=0 skips it.
OUT_BLENDS=${OUT_BLENDS:-${OUT}-blends}
BLENDS_HOURS=${BLENDS_HOURS:-6}
OUT_AWB=${OUT_AWB:-${OUT}-awb}
AWB_HOURS=${AWB_HOURS:-1.5}
AWB_EPOCHS=${AWB_EPOCHS:-4}
AWB_LR=${AWB_LR:-5e-4}
LOOKAHEAD=${LOOKAHEAD:-0}
# Stage 6 (needs stage 5): four more 4-epoch fine-tunes — stage 5's data again (lr SOUP_LR, from stage 5),
# plus FOREIGN_HOURS of 8 foreign festival voices reading English (asr synth --foreign-diphones; from stage
# 5, and from stage 4 at AWB_LR), plus WORLD_HOURS of WORLD-vocoder voices made from stage 5's data (asr
# revoice; needs asr[revoice]) — then the bundled model is the mean of the five models' weights (asr
# average). Each alone was no better than stage 5 on test; their average is. SOUP_EPOCHS=0 skips it.
OUT_FOREIGN=${OUT_FOREIGN:-${OUT}-foreign}
FOREIGN_HOURS=${FOREIGN_HOURS:-2}
FOREIGN_VOICES=${FOREIGN_VOICES:-festival:pc_diphone,festival:lp_diphone,festival:czech_dita,festival:czech_krb,festival:czech_machac,festival:czech_ph,festival:hy_fi_mv_diphone,festival:suo_fi_lj_diphone}
OUT_WORLD=${OUT_WORLD:-${OUT}-world}
WORLD_HOURS=${WORLD_HOURS:-2}
SOUP_EPOCHS=${SOUP_EPOCHS:-4}
SOUP_LR=${SOUP_LR:-3e-4}
