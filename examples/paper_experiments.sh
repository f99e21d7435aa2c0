#!/usr/bin/env bash
# The experiments behind docs/results.md ("The paper's experiments at
# small scale"), run sequentially on one frozen checkpoint. Every command is
# echoed to $OUT/commands.log with its wall time. Stages (pick with STAGES):
#   tune      prompt vs model tuning on sst2, qqp, mrpc, rte (keras-prompt train)
#   transfer  zero-shot QQP -> MRPC and MRPC -> QQP (keras-prompt eval --format-as)
#   ensemble  K=5 SST-2 prompts, majority vote (examples/ensemble.py)
#   hitrate   verbalizer hit-rate of the ablation's prompts (keras-prompt inspect)
# The length x init ablation is examples/ablations.py (run before, see docs).
#
#   bash examples/paper_experiments.sh            # everything, small defaults
#   STAGES="tune transfer" STEPS=300 bash examples/paper_experiments.sh
set -euo pipefail

DATA=${DATA:-../shared/assets}
OUT=${OUT:-runs/issue5}
MODEL=${MODEL:-keras_prompt/presets/t5_1_1_mini_lm}
STEPS=${STEPS:-200}
BATCH=${BATCH:-16}
P=${P:-20}                           # prompt length for the tuning comparison
TASKS=${TASKS:-"sst2 qqp mrpc rte"}
STAGES=${STAGES:-"tune transfer ensemble hitrate"}
ABLATE=${ABLATE:-$OUT/ablate}        # examples/ablations.py --out
NICE=${NICE:-"nice -n 15"}

mkdir -p "$OUT"
LOG="$OUT/commands.log"

run() {
  local start=$SECONDS
  echo "+ $*" | tee -a "$LOG" >&2
  $NICE "$@"
  echo "  wall $((SECONDS - start)) s" | tee -a "$LOG" >&2
}

has() { [[ " $STAGES " == *" $1 "* ]]; }

if has tune; then
  for task in $TASKS; do
    run keras-prompt train --task "$task" --model "$MODEL" --data-dir "$DATA" \
      --tune prompt --prompt-length "$P" --init class_labels \
      --steps "$STEPS" --batch-size "$BATCH" --seed 0 --verbose 0 \
      --out "$OUT/tune/$task-prompt" > "$OUT/tune-$task-prompt.json"
    run keras-prompt train --task "$task" --model "$MODEL" --data-dir "$DATA" \
      --tune model --steps "$STEPS" --batch-size "$BATCH" --seed 0 --verbose 0 \
      --out "$OUT/tune/$task-model" > "$OUT/tune-$task-model.json"
  done
fi

if has transfer; then
  # Train on the source task (stage "tune"), evaluate zero-shot on the other
  # task's held-out rows phrased as the source task (its prefix, field names
  # and verbalizers).
  for pair in "qqp mrpc" "mrpc qqp"; do
    set -- $pair
    run keras-prompt eval --task "$2" --format-as "$1" --model "$MODEL" \
      --prompt "$OUT/tune/$1-prompt/$1.npy" --data-dir "$DATA" \
      > "$OUT/transfer-$1-to-$2-prompt.json"
    run keras-prompt eval --task "$2" --format-as "$1" \
      --model "$OUT/tune/$1-model/preset" --data-dir "$DATA" \
      > "$OUT/transfer-$1-to-$2-model.json"
  done
fi

if has ensemble; then
  # Five SST-2 prompts with the ablation's P=20 class-label configuration;
  # seeds 0-2 come from the ablation when it has them.
  ENS="$OUT/ensemble"
  members=()
  for seed in 0 1 2 3 4; do
    f="$ABLATE/prompts/p20_class_labels_s$seed.npy"
    [[ -f "$f" ]] || f="$ENS/prompts/p20_class_labels_s$seed.npy"
    if [[ ! -f "$f" ]]; then
      run python examples/ablations.py --model "$MODEL" --data-dir "$DATA" \
        --out "$ENS" --lengths 20 --inits class_labels --seeds "$seed" \
        --steps "$STEPS" --batch-size "$BATCH"
    fi
    members+=("$f")
  done
  run python examples/ensemble.py --task sst2 --model "$MODEL" --data-dir "$DATA" \
    --prompts "${members[@]}" --out "$OUT/ensemble.json" > /dev/null
fi

if has hitrate; then
  # One process for all prompts (the table loads once); `keras-prompt inspect
  # FILE --model $MODEL --task sst2` prints the same hit-rate for one file.
  run python examples/hit_rates.py --model "$MODEL" --task sst2 --with-init \
    --out "$OUT/hitrate.csv" "$ABLATE"/prompts/p*_s*.npy
fi
