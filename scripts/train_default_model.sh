#!/usr/bin/env bash
# Rebuild the bundled default model (echopulse/generator/weights/default) from nothing but this repository:
# phantom data, the tokenizer, the ECG encoder, then the generator (transformer), all on a CPU.
# docs/MODEL_CARD.md gives the data recipe, the measured quality and the time this took on 2 cores.
#
#   bash scripts/train_default_model.sh [BUILD_DIR]
#
# Seeds are fixed. The runs used one torch thread each (OMP_NUM_THREADS=1: on a shared 2-core machine that
# is faster than two), so a rebuild on other hardware or thread counts gives a model of the same recipe and
# quality, not the same bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build/default-model}"
bash scripts/setup.sh
PY=.venv/bin/python
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# 1. Training data: 4000 paired (12-lead ECG, one-cycle 64×64×11 apical four-chamber clip) phantom samples.
#    Seed 1; evaluation uses seed 900000, which training never sees.
$PY -m echopulse phantom --n 4000 --seed 1 --size 64 --frames 11 --out "$BUILD/phantom"

# 2. Video tokenizer (stage 1): 1500 steps, then 2000 more from those weights at a lower peak rate.
$PY -m echopulse train tokenizer --config small --data "$BUILD/phantom" --out "$BUILD/tokenizer-a" \
    --steps 1500 --batch-size 8 --lr 1e-3 --seed 0 --sample-every 250 --save-every 250
$PY -m echopulse train tokenizer --config small --data "$BUILD/phantom" --out "$BUILD/tokenizer" \
    --init "$BUILD/tokenizer-a" --steps 2000 --batch-size 8 --lr 5e-4 --warmup 50 --seed 1 \
    --sample-every 500 --save-every 250

# 3. ECG encoder (stage 0, independent of 1 and 2): regress the cardiac state the phantom's ECG decides
#    (EF, systolic timing, heart rate, QRS width and voltage, ST) from fresh lead-I ECGs in mV.
$PY -m echopulse train ecg --config small --out "$BUILD/ecg" --leads I --steps 3500 --batch-size 32 \
    --lr 2e-3 --warmup 50 --seed 0 --save-every 250

# 4. Generator (stage 2): the masked-token transformer on the tokenizer's ids, conditioned on the frozen
#    encoder (lead I only, what a watch records), condition dropout 0.15 for classifier-free guidance.
#    It runs beside step 5, one thread each, as the bundled model was built; the schedule spans 4500 steps
#    and the run stops at 4000 (the time it had), where the learning rate is already below a tenth of its peak.
$PY -m echopulse train generator --config small --data "$BUILD/phantom" --tokenizer "$BUILD/tokenizer" \
    --stmem "$BUILD/ecg" --freeze-stmem --out "$BUILD/generator" --leads I --steps 4500 --batch-size 24 \
    --lr 8e-4 --warmup 150 --seed 0 --until 4000 --sample-every 1000 --save-every 500 --no-progress &
GENERATOR_PID=$!

# 5. The tokenizer's decoder alone, 6000 more steps: every clip keeps its token ids (the generator's
#    targets), and the pixels those ids decode to get sharper.
$PY -m echopulse train tokenizer --config small --data "$BUILD/phantom" --out "$BUILD/decoder" \
    --init "$BUILD/tokenizer" --decoder-only --steps 6000 --batch-size 8 --lr 4e-4 --warmup 50 --seed 2 \
    --sample-every 1000 --save-every 500
wait "$GENERATOR_PID"

# 6. Install the generator with the trained decoder as the bundled model, evaluate it on held-out beats.
# The metadata names the recipe rather than this machine's paths.
$PY - "$BUILD/generator" "$BUILD/decoder" <<'PYTHON'
import sys
from echopulse.generator.checkpoints import load_checkpoint, save_checkpoint
from echopulse.generator.echo_generator import BUNDLED_DIR
checkpoint = load_checkpoint(sys.argv[1])
decoder = load_checkpoint(sys.argv[2])
assert decoder.config.tokenizer == checkpoint.config.tokenizer
state = {**checkpoint.state, "tokenizer": decoder.state["tokenizer"]}
metadata = {k: v for k, v in checkpoint.metadata.items() if k not in ("format", "config_hash", "parts")}
metadata.update(model_id="echopulse-default", data="echopulse phantom --n 4000 --seed 1 --size 64 --frames 11",
                recipe="scripts/train_default_model.sh", synthetic_training_data="true",
                ecg_encoder="echopulse train ecg (frozen in stage 2)", tokenizer_decoder_steps="6000")
save_checkpoint(BUNDLED_DIR, checkpoint.config, state, metadata=metadata)
print(f"installed {BUNDLED_DIR}")
PYTHON
$PY -m echopulse eval --n 200 --seed 900000 --out "$BUILD/eval"
