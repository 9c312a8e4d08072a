# Settings for recipes/librispeech/run.sh; override any of them in the environment.
DATA=${DATA:-data}                     # downloads and extracted corpora go here
EXP=${EXP:-exp/librispeech-100}        # checkpoints, history.json, progress.png
TRAIN_SUBSETS=${TRAIN_SUBSETS:-"train-clean-100"}
DEV_SUBSET=${DEV_SUBSET:-dev-clean}
TEST_SUBSETS=${TEST_SUBSETS:-"test-clean test-other"}
# Model: 5 x 512 GRU (~8.6 M parameters) streams in real time on one CPU core.
HIDDEN=${HIDDEN:-512}
LAYERS=${LAYERS:-5}
EPOCHS=${EPOCHS:-40}
BATCH_SECONDS=${BATCH_SECONDS:-800}    # padded audio seconds per batch and process (GPU)
LR=${LR:-1.5e-3}
WARMUP_STEPS=${WARMUP_STEPS:-1500}
NUM_WORKERS=${NUM_WORKERS:-4}
NPROC=${NPROC:-1}                      # processes (GPUs) on this machine; >1 uses torchrun + DDP
