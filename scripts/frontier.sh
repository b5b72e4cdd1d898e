#!/usr/bin/env bash
# The trainability frontier (issue 19): the two networks that train at any depth without batch norm,
# each beside its seed-init control at the same depth, budget and step size.
#
#   scripts/frontier.sh                 # k = 999 on this CPU (docs/results.md's rows)
#   scripts/frontier.sh 9999 gpu        # k = 9,999 on a GPU (Xiao et al. 2018's depth)
#
# Environment: DATA_DIR (default ../shared/datasets), OUT (default runs/frontier), SEED (default 0), BATCHES (training
# batches of 64, default 200 = the η sweep's reduced budget), RUNS (which of tanh_delta_orthogonal,
# tanh_tat, tanh_seed, resnet_skipinit, resnet_seed; default all five; tanh_tat needs dks: pip install -e ".[frontier]"), ACTIVATION_CHECKPOINTING=1 (recompute
# activations in the backward pass: for a GPU whose memory the k = 9,999 ResNet would exceed, ≈ 25 GB).
#
# Step sizes follow the measured η_max ∝ k^(−p) (scripts/experiment.py lr_depth_scaling, docs/results.md's
# η-scaling table): --lr is the rate at k = 300 and --lr-depth-scaling power:P@300 scales it to DEPTH.
# Each run prints its results.json path; results.json holds test_acc, wall_time_s and memory.peak_*.
set -euo pipefail

DEPTH="${1:-999}"
ACCELERATOR="${2:-cpu}"
DATA_DIR="${DATA_DIR:-../shared/datasets}"
OUT="${OUT:-runs/frontier}"
BATCHES="${BATCHES:-200}"
SEED="${SEED:-0}"
RUNS="${RUNS:-tanh_delta_orthogonal tanh_tat tanh_seed resnet_skipinit resnet_seed}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# measured at k = 30, 99, 300 (reduced budget, seed 0): η_max(300) and the fitted power p
TANH_LR_300=0.002
TANH_POWER=1.45
RESNET_LR_300=0.02
RESNET_POWER=0.5

extra=()
if [[ "${ACTIVATION_CHECKPOINTING:-0}" == 1 ]]; then extra+=(--activation-checkpointing); fi

run() {  # run NAME MODEL INIT LR POWER
    local name="$1" model="$2" init="$3" lr="$4" power="$5"
    [[ " $RUNS " == *" $name "* ]] || return 0
    echo "== $name: $model --init $init at k = $DEPTH on $ACCELERATOR"
    python "$HERE/fit.py" --model "$model" --depth "$DEPTH" --init "$init" \
        --lr "$lr" --lr-depth-scaling "power:$power@300" \
        --epochs 1 --limit-train-batches "$BATCHES" --batch-size 64 --val-split none --seed "$SEED" \
        --accelerator "$ACCELERATOR" --data-dir "$DATA_DIR" --out "$OUT" \
        --run-name "$model-$init-k$DEPTH-seed$SEED" --no-progress-bar "${extra[@]}" || echo "(exit $?: see above)"
}

run tanh_delta_orthogonal cnn_tanh delta_orthogonal "$TANH_LR_300" "$TANH_POWER"
run tanh_tat cnn_tanh tat "$TANH_LR_300" "$TANH_POWER"  # TAT at delta-orthogonal's step size (not tuned for TAT)
run tanh_seed cnn_tanh seed "$TANH_LR_300" "$TANH_POWER"
run resnet_skipinit resnet_elu_nobn skipinit "$RESNET_LR_300" "$RESNET_POWER"
run resnet_seed resnet_elu_nobn seed "$RESNET_LR_300" "$RESNET_POWER"
