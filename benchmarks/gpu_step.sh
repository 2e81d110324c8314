#!/usr/bin/env bash
# The gpu profile's training step on a lent GPU machine, in one device call (docs/device-tries.md, "The gpu profile's step").
#
#   bash benchmarks/gpu_step.sh            # there, from the repository root, with .whl carried (Keras, namex, optree)
#
# Measures EfficientNetV2-S at 300 px with its first 124 layers frozen (05's fine-tuning phase), batch 32, in float32 and
# in the format precision "auto" picks for the GPU (mixed_bfloat16 from compute capability 8.0, mixed_float16 on 7.x),
# each fed from memory ("plain") and through the suite's augmentation pipeline, with the GPU's mean utilisation: the
# pipeline keeps the GPU busy when the augmented step is about as fast, and the GPU about as busy, as the plain one.
# One JSON line per measurement into $OUT/gpu_step.jsonl; IMAGES, ROUNDS, POLICY, BACKEND and SIZE change the defaults.
set -u
out=${OUT:-/tmp/device_out}
mkdir -p "$out"
if [ -d .whl ] && [ -z "${PYTHON:-}" ]; then  # PYTHON: an interpreter that has Keras already (a local test)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=${BACKEND:-torch} PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader | tee "$out/gpu.txt"
for precision in float32 auto; do
  timeout "${LIMIT:-240}" ${PYTHON:-python3} benchmarks/augmentation.py --model EfficientNetV2S --image-size "${SIZE:-300}" \
    --frozen-layers 124 --batch-size 32 --images "${IMAGES:-1024}" --rounds "${ROUNDS:-2}" --plain numpy \
    --policy "${POLICY:-randaugment_cutmix_mixup}" --precision "$precision" 2>"$out/gpu_step_$precision.err" | tee -a "$out/gpu_step.jsonl"
  echo "precision $precision exited ${PIPESTATUS[0]}"; tail -n 5 "$out/gpu_step_$precision.err"
done
