#!/usr/bin/env bash
cd /work/exp23
source /work/main/env.sh
export PYTHONPATH=/work/exp23/ros2_ws/src/lara_policy:$PYTHONPATH OMP_NUM_THREADS=1
r=results/pretrained_fewshot/runs/seed-0__name-frozen
exec nice -n 5 lara eval sim --tasks MT10 --episodes 50 --seed-start 100000 --max-steps 300 --execute-k 8 \
  --policy $r/train/final --out $r/eval --train-store data/mt10_fewshot_2cam128.hdf5 --workers 2 --videos 0 \
  --runtime onnxruntime
