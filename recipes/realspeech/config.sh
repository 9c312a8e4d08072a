# Settings for recipes/realspeech/run.sh; override any of them in the environment.
# The defaults are the ones that made the bundled model and LM (assets/MODEL.md).
SHARED=${SHARED:-/work/shared/data}                 # realspeech/, noise/, lm-text/ (../shared/data/README.md)
REAL=${REAL:-$SHARED/realspeech}
GUTENBERG=${GUTENBERG:-$SHARED/lm-text/gutenberg.txt.xz}
DATA=${DATA:-data/realspeech}                       # the Asterisk test set, exclusion lists
EXP=${EXP:-exp/realspeech}                          # checkpoints, history.json, progress.png, LM, eval
INIT=${INIT:-$EXP/synthetic.pt}                   # start from the synthetic-voice model ("" = from scratch);
#   missing: taken from git (the bundled model before the real-speech one, docs/synthetic-model.md)
SEED=${SEED:-1}
# Stage 2a, R1: fine-tune on all 9.2 h of real training speech; bf16 autocast where native (as good as fp32).
EPOCHS=${EPOCHS:-9}                                  # 2,979 steps of 160 s batches
LR=${LR:-1e-3}
BATCH_SECONDS=${BATCH_SECONDS:-160}
EQ_PROB=${EQ_PROB:-0.3}                             # random band limits + peaking EQ
REVERB_PROB=${REVERB_PROB:-0.3}                     # synthetic room tail
PRECISION=${PRECISION:-auto}                        # bf16 where the CPU has it natively (2x faster), else fp32
# Stage 2b-2d, the bundled model: R1 widened to HIDDEN units, then trained on the real speech (sentence
# sources repeated) + synthetic voices reading Gutenberg sentences (eSpeak NG, Festival, Flite, Piper).
TTS_FRACTION=${TTS_FRACTION:-0.02}                  # share of the 6-20-word Gutenberg lines read by the voices
SYNTH_HOURS=${SYNTH_HOURS:-5}                       # eSpeak NG / Festival / Flite voices (asr synth)
PIPER_HOURS=${PIPER_HOURS:-4}                       # the Piper voice and its vocal-tract variants
HIDDEN=${HIDDEN:-512}
MIX_STEPS=${MIX_STEPS:-3400}                        # 160 s batches (5 epochs of the 22.9 h mix)
MIX_LR=${MIX_LR:-1e-3}
MIX_SEED=${MIX_SEED:-3}
REPEAT=${REPEAT:-commonvoice1=2 ljspeech=2 vctk_samples=2 hifitts_6097=2}
CODEC_PROB=${CODEC_PROB:-0.15}                      # phone/GSM/Opus/MP3 codecs
NOISE=${NOISE:-$SHARED/noise}                       # real background noise recordings (a quarter of the noisy clips get white/brown noise)
# Stage 2e: more steps from 2d's last checkpoint, with VTLP and more channel augmentation
MORE_STEPS=${MORE_STEPS:-1800}                      # 2.6 epochs of the same mix
MORE_LR=${MORE_LR:-5e-4}
MORE_SEED=${MORE_SEED:-4}
FREQ_WARP=${FREQ_WARP:-0.1}                         # log-mel frequency axis warped by 0.9-1.1 (vocal tract length)
MORE_EQ_PROB=${MORE_EQ_PROB:-0.5}
MORE_CODEC_PROB=${MORE_CODEC_PROB:-0.25}
# The LM: pruned 4-gram KenLM from Gutenberg + the training transcripts (LM.md here)
ORDER=${ORDER:-4}
PRUNE=${PRUNE:-0 1 2 2}
VOCAB_MIN_COUNT=${VOCAB_MIN_COUNT:-20}
DICT=${DICT:-/usr/share/dict/american-english}      # Debian wamerican: keeps rare real words
EXCLUDE_MIN_WORDS=${EXCLUDE_MIN_WORDS:-2}           # 2: single-word training lines stay (LM.md)
