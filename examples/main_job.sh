#!/usr/bin/env bash
# The main job on a fresh machine: install, prompt-tune a frozen T5 on real
# SST-2 data, report held-out accuracy, save and inspect the prompt, export a
# TF Serving SavedModel with the prompt in its bank, and query the export.
#
#   bash examples/main_job.sh            # defaults below
#   MODEL=path/to/preset STEPS=300 bash examples/main_job.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2

ASSETS=${ASSETS:-../shared/assets}
OUT=${OUT:-runs/main_job}
STEPS=${STEPS:-1000}
TASK=${TASK:-sst2}

bash scripts/setup.sh
KP=.venv/bin/keras-prompt

if [ -z "${MODEL:-}" ]; then
  MODEL=$(.venv/bin/python -c "from keras_prompt.presets import default_preset_path as p; print(p())" 2>/dev/null || true)
fi
if [ -z "${MODEL:-}" ]; then
  # No pretrained checkpoint: a randomly initialised t5-small-geometry preset.
  MODEL=$OUT/random_t5_small
  [ -f "$MODEL/config.json" ] || $KP make-preset --geometry t5_small \
    --vocab "$ASSETS/t5/spiece.model" --out "$MODEL"
fi
echo "== model: $MODEL"

$KP train --task "$TASK" --model "$MODEL" --data-dir "$ASSETS" \
  --prompt-length 20 --init class_labels --steps "$STEPS" --batch-size 32 \
  --max-input-length 128 --dtype mixed_bfloat16 --out "$OUT" --verbose 2

$KP inspect "$OUT/$TASK.npy" --model "$MODEL" -k 5 | head -n 6

# TF Serving layout: $OUT/export/<version>/ (see docs/serving.md to deploy).
rm -rf "$OUT/export"
$KP export --model "$MODEL" --prompt "$TASK=$OUT/$TASK.npy" --out "$OUT/export" \
  --max-input-length 128
# Query it in a TF-only process: rank classification over the task's verbalizers.
$KP query "$OUT/export/1" --signature by_task --task "$TASK" \
  --text "a gorgeous, witty, seductive movie." \
  --text "the plot is nothing but boilerplate clichés from start to finish."
