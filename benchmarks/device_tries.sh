#!/usr/bin/env bash
# Recipe tries side by side on a lent GPU machine, in one device call (docs/device-tries.md).
#
#   bash benchmarks/device_tries.sh TRIES_FILE          # there, from the repository root, with .gpu and .whl carried
#
# TRIES_FILE: one try per line, "name key=value ..." (utils.tools.recipe_search --set fields), # for comments. Every try
# trains under Keras' torch backend on the images that `device_data.py pack` put in .gpu/data, for EPOCHS epochs
# (default 72) or, with BUDGET=<minutes>, as many as fit. It is scored there on clean validation and training cells;
# its model comes back in $OUT as <name>.tar.gz.aa, .ab, ... (parts of 15 MiB: the device returns files of at most
# 16 MiB, and widths 64-512 weigh 19 MiB). Here: `cat <name>.tar.gz.* | tar xzf -`, then
# `python -m utils.tools.recipe_search --run <run> --name <name> --model <name>` adds the corruption suite.
# Two tries side by side took 5.4-5.6 s per epoch on an H200, as one alone did: each is bound by its own
# Python process (the eager augmentation and Keras' per-step work under torch), not by the GPU.
set -u
tries=${1:?"give a file of tries, one per line: name key=value ..."}
out=${OUT:-/tmp/device_out}
mkdir -p "$out"
if [ -d .whl ] && [ -z "${PYTHON:-}" ]; then  # PYTHON: an interpreter that has Keras already (a local test)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=torch PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
run=${RUN:-/tmp/run}
[ -e "$run/clean.npz" ] || python3 benchmarks/device_data.py unpack .gpu/data "$run" || exit 1
count=$(grep -cv '^\s*\(#\|$\)' "$tries")
threads=$(( $(nproc) / (count > 0 ? count : 1) ))
if [ -n "${BUDGET:-}" ]; then length=(--budget-minutes "$BUDGET"); epochs=(); else length=(); epochs=("epochs=${EPOCHS:-72}"); fi
one() {
  name=$1; shift
  rm -rf "/tmp/tries/$name"
  OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 )) timeout "${LIMIT:-540}" ${PYTHON:-python3} -m utils.tools.recipe_search --run "$run" \
    --name "$name" --out /tmp/tries "${length[@]}" --clean-only --no-checkpoint \
    --views identity flip_horizontal flip_vertical rotate_90 rotate_180 rotate_270 --set "$@" "${epochs[@]}" > "$out/$name.log" 2>&1
  echo "$name exited $?"; grep -v '^Epoch\|^  File\|^    ' "$out/$name.log" | tail -n 25
  [ -e "/tmp/tries/$name/model.weights.h5" ] && tar czf - -C /tmp/tries --exclude=checkpoint "$name" | split -b 15M - "$out/$name.tar.gz."
}
set -f  # settings such as widths=[64,128,256,512] are words, never file patterns
while read -r name settings; do
  case "$name" in ''|'#'*) continue ;; esac
  # shellcheck disable=SC2086  # the settings are words on purpose
  one "$name" $settings &
done < "$tries"
wait
ls -la "$out"
