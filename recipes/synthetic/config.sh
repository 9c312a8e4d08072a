# Settings for recipes/synthetic/run.sh; override any of them in the environment.
OUT=${OUT:-data/synthetic}
HOURS_TRAIN=${HOURS_TRAIN:-5}
HOURS_DEV=${HOURS_DEV:-0.5}
HOURS_TEST=${HOURS_TEST:-0.5}
SEED=${SEED:-0}
JOBS=${JOBS:-$(nproc)}
ENGINES=${ENGINES:-espeak,festival,flite}
