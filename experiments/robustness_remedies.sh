#!/usr/bin/env bash
# Issue 28 remedies, each the default MT3 recipe (models/lara-metaworld-mt3/README.md: same demos,
# video, steps, seed) with one change, then scored like experiments/robustness_sweep.sh on the same
# held-out layouts: none / medium / high distractors. Resumable (finished steps are skipped).
#   photometric: --aug-photometric 1.0 (brightness, contrast, channel gain on the VLA's images)
#   dr:          domain randomisation: the same 120 expert demos also rendered with medium
#                distractors (all four effects, other draws per episode) as extra labelled data
#   dr_high:     the same, rendered with HIGH distractors (camera jitter at full strength: the effect
#                that breaks push), so the image position of the puck alone stops predicting the
#                action and the policy must read it relative to the gripper it also sees
#   wrist:       the same demos and video rendered with corner4 + gripperPOV (the wrist camera on its
#                mount: the jitter shakes scene cameras only), both cameras into the VLA; the video
#                store must carry every camera the run reads (the LAM reads the first, corner4)
#   pretrained:  the recipe issue 23 favours: ImageNet EfficientNet-Lite0, frozen, on corner4 +
#                gripperPOV at 128 px (demos and video rendered so; the LAM resizes to its 64 px)
#   experiments/robustness_remedies.sh [REMEDY...]   (default: every remedy, in the order below)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=results/robustness
chosen=("$@")
demos() {  # out, args...: render unless it exists; corner4 at 64 px unless the args say otherwise
  local out=$1; shift
  [ -f "$out" ] && return 0
  local cams=(--cameras corner4) size=(--image-size 64)
  [[ " $* " == *" --cameras "* ]] && cams=()      # --cameras adds up: name them once
  [[ " $* " == *" --image-size "* ]] && size=()
  lara demos "${cams[@]}" "${size[@]}" --workers 1 --quiet --out "$out" "$@"
}
needed() {  # whether a remedy is chosen and still lacks a score (its own demos are rendered only then)
  if [ ${#chosen[@]} -gt 0 ] && [[ " ${chosen[*]} " != *" $1 "* ]]; then return 1; fi
  local s; for s in none medium high; do [ -f "$out/$1/$s/results.json" ] || return 0; done; return 1
}
if needed dr || needed dr_high || needed photometric; then   # the default recipe's demos and video
  demos data/mt3_train.hdf5 --tasks reach-v3,push-v3,drawer-close-v3 --episodes 40 --seed-start 0
  demos data/mt3_video.hdf5 --tasks reach-v3,push-v3,drawer-close-v3,button-press-v3 --episodes 20 \
    --seed-start 50000 --action-free --distractors medium
fi
needed dr && demos data/mt3_train_dr.hdf5 --tasks reach-v3,push-v3,drawer-close-v3 --episodes 40 \
  --seed-start 0 --distractors medium
needed dr_high && demos data/mt3_train_dr_high.hdf5 --tasks reach-v3,push-v3,drawer-close-v3 --episodes 40 \
  --seed-start 0 --distractors high
two=(--cameras corner4,gripperPOV)
if needed wrist; then
  demos data/mt3_train_2cam.hdf5 --tasks reach-v3,push-v3,drawer-close-v3 --episodes 40 --seed-start 0 "${two[@]}"
  demos data/mt3_video_2cam.hdf5 --tasks reach-v3,push-v3,drawer-close-v3,button-press-v3 --episodes 20 \
    --seed-start 50000 --action-free --distractors medium "${two[@]}"
fi
two128=(--cameras corner4,gripperPOV --image-size 128)
if needed pretrained; then
  demos data/mt3_train_2cam128.hdf5 --tasks reach-v3,push-v3,drawer-close-v3 --episodes 40 --seed-start 0 "${two128[@]}"
  demos data/mt3_video_2cam128.hdf5 --tasks reach-v3,push-v3,drawer-close-v3,button-press-v3 --episodes 20 \
    --seed-start 50000 --action-free --distractors medium "${two128[@]}"
fi
common=(--paradigm pretrain --video-fraction 0.125 --variant lara --steps 6000
        --seed 1 --aug-shift 0 --threads 1 --save-every 500 --quiet)
train() {  # name, extra args...
  local name=$1; shift
  [ -f "runs/robust_$name/final/model.safetensors" ] && return
  lara train "${common[@]}" --name "lara-mt3-$name" --out "runs/robust_$name" --resume "$@"
  mkdir -p "$out/runs/$name" && cp "runs/robust_$name/metrics.csv" "runs/robust_$name/training_curves.png" "$out/runs/$name/"
}
remedy() {  # name, train args...: train (unless every score is there) and score it
  local name=$1; shift
  needed "$name" || return 0
  train "$name" "$@"
  for setting in none medium high; do
    dir="$out/$name/$setting"
    [ -f "$dir/results.json" ] || lara eval sim --policy "runs/robust_$name/final" --tasks MT3 --episodes 30 \
      --seed-start 100000 --execute-k 8 --distractors "$setting" --videos 1 --quiet --out "$dir"
  done
}
video=(--video data/mt3_video.hdf5)     # --video adds to a list: each remedy names its own
remedy dr --data data/mt3_train.hdf5 data/mt3_train_dr.hdf5 "${video[@]}"
remedy dr_high --data data/mt3_train.hdf5 data/mt3_train_dr_high.hdf5 "${video[@]}"
remedy wrist --data data/mt3_train_2cam.hdf5 --video data/mt3_video_2cam.hdf5 --cameras corner4 gripperPOV
remedy photometric --data data/mt3_train.hdf5 --aug-photometric 1.0 "${video[@]}"
remedy pretrained --data data/mt3_train_2cam128.hdf5 --video data/mt3_video_2cam128.hdf5 \
  --cameras corner4 gripperPOV --image-size 128 --vision-backbone efficientnet_lite0 --vision-train frozen
