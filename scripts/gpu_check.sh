#!/usr/bin/env bash
# The GPU checks of issues 4 and 5 as ONE prepared call, for a session that is lent a GPU (the device tool gives
# 15 minutes of device time per task, all tries together, a machine's start included; this script ends by
# $DEADLINE seconds, default 545, so one call with timeout_s=600 holds it):
#
#   1. here, once:  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                       --implementation cp --platform manylinux2014_x86_64 -d .whl pytorch-fid==0.3.0
#      (.whl/ is gitignored; the device image has PyTorch, pandas, matplotlib, tqdm, scipy but not pytorch-fid)
#      and, for the study runs of step 5:  python scripts/carry_celeba.py pack   (-> .carry/, gitignored, 29 MB)
#   2. device tool: run(command="bash scripts/gpu_check.sh", carry=[".whl", ".carry"], timeout_s=600)
#      (the working tree travels too, 64 MiB in all: move results/cpu/ out of the checkout for the call)
#   3. copy what came back (files_at) to results/paper/gpu_check/, unpack runs.tar.gz into the notebook's own runs
#      root results/runs/<notebook>/ (which `reproduce` uses when it exists) and commit the finished runs
#      (scripts/record_runs.sh results/runs/<notebook>).
#
# What it does, each step's output into $OUT (default results/gpu_check; 8 files, the tool's limit):
#   nvidia-smi.txt    the GPU
#   train_step.log    benchmarks/train_step.py at the paper's shape (batch 64, 64x64, width 64): DCGAN, iGAN
#                     case 1, SAGAN, each fp32 and bf16 (last line of each: sec_per_step=...); first, on an idle GPU
#   paper_igan_{config.json,status.json,metrics.csv,train.log}
#                     `python -m gan_lib train --preset paper` (Table 1) for $STEPS steps (default 300) of iGAN
#                     on $DATASET (default synthetic: the step time does not depend on the images), with one
#                     SWD/KID evaluation at the end
#   runs.tar.gz       only with .carry/: the runs of notebook $EXPERIMENT (default 02) on the carried CelebA
#                     (scripts/carry_celeba.py stage), preset $PRESET (default cpu), $JOBS (default 8) runs at
#                     a time, seed-major (scripts/train_experiment.py), stopped with SIGINT at $DEADLINE; the
#                     run folders without checkpoints, and runs.log
#   test_cuda.log     tests/test_cuda.py (involution on CUDA vs unfold, second derivatives, a training step of
#                     each GAN in fp32 and bf16, a CLI run on CUDA), while the study runs train
#
# Without a GPU, a dry run of the plumbing:  DEVICE=cpu QUICK=1 PY=.venv/bin/python bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
DEVICE="${DEVICE:-cuda}"
STEPS="${STEPS:-300}"
DATASET="${DATASET:-synthetic}"
OUT="${OUT:-results/gpu_check}"
DEADLINE="${DEADLINE:-545}"                      # seconds after the start: the study runs get SIGINT
EXPERIMENT="${EXPERIMENT:-02}" PRESET="${PRESET:-cpu}" JOBS="${JOBS:-8}" THREADS="${THREADS:-1}"
STAGE_ROOT="${STAGE_ROOT:-/work/shared/data/celeba}"  # the data_root the committed cpu-preset runs record
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [ -n "${QUICK:-}" ]; then  # dry run: tiny shapes, few steps
    BENCH=(--steps 1 --warmup 1 --batch 8 --image-size 32 --width 16 --no-floor); STEPS=4
    TRAIN_SET=(image_size=32 width=8 batch_size=8 max_images=64 eval_num_samples=32)
    MODELS="igan"; TESTS=(-k "dcgan-fp32 or cli"); STUDY_ARGS=(--steps 6 --eval-every 3 --seeds 0,1)
else
    BENCH=(--steps 20 --warmup 5); TRAIN_SET=(eval_num_samples=2000); MODELS="dcgan igan sagan"; TESTS=(); STUDY_ARGS=()
fi
status=0
{ nvidia-smi || echo "no nvidia-smi"; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
    > "$OUT/nvidia-smi.txt" 2>&1

echo "== benchmarks/train_step.py ($SECONDS s)"
: > "$OUT/train_step.log"
for model in $MODELS; do
    for precision in fp32 bf16; do
        timeout 90 "$PY" benchmarks/train_step.py --model "$model" --precision "$precision" --device "$DEVICE" \
            "${BENCH[@]}" 2>&1 | tee -a "$OUT/train_step.log" || status=1
    done
done

echo "== paper preset, iGAN, $STEPS steps on $DATASET ($SECONDS s)"
RUN="$(mktemp -d)/paper_igan"
timeout 150 "$PY" -m gan_lib train --model igan --dataset "$DATASET" --preset paper --out "$RUN" --steps "$STEPS" \
    --no-progress --set device="$DEVICE" precision=auto metrics=swd,kid best_metric=swd eval_every="$STEPS" \
    sample_every="$STEPS" ckpt_every="$STEPS" "${TRAIN_SET[@]}" 2>&1 | tee "$OUT/paper_igan_train.log" | tail -n 8 \
    || status=1
for f in config.json status.json metrics.csv; do
    [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/paper_igan_$f"
done

study=""
if [ -f ".carry/celeba32.json" ]; then
    echo "== notebook $EXPERIMENT runs, $PRESET preset, on the carried CelebA ($SECONDS s; stopped at $DEADLINE s)"
    RUNS="$(mktemp -d)"
    if "$PY" scripts/carry_celeba.py stage --root "$STAGE_ROOT" > "$RUNS/runs.log" 2>&1; then
        setsid "$PY" scripts/train_experiment.py "$EXPERIMENT" --preset "$PRESET" --data-root "$STAGE_ROOT" \
            --runs-root "$RUNS" --jobs "$JOBS" --threads "$THREADS" "${STUDY_ARGS[@]}" >> "$RUNS/runs.log" 2>&1 &
        study=$!
    else
        status=1
    fi
    cat "$RUNS/runs.log"
fi

echo "== tests/test_cuda.py ($SECONDS s)"
GAN_LIB_TEST_DEVICE="$DEVICE" timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py "${TESTS[@]}" \
    2>&1 | tee "$OUT/test_cuda.log" || status=1

if [ -n "$study" ]; then
    while kill -0 "$study" 2>/dev/null && [ "$SECONDS" -lt "$DEADLINE" ]; do sleep 2; done
    if kill -0 "$study" 2>/dev/null; then  # SIGINT to its process group: running runs checkpoint, none starts
        echo "deadline at $SECONDS s: SIGINT to the study runs" | tee -a "$RUNS/runs.log"
        kill -INT -- "-$study" 2>/dev/null
        for _ in $(seq 25); do kill -0 "$study" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$study" 2>/dev/null
    fi
    wait "$study"; echo "study exit $? at $SECONDS s" >> "$RUNS/runs.log"
    grep '^{' "$RUNS/runs.log" | "$PY" -c "import json,sys; [print(d['name'], d['state'], d['step'], d['wall_sec']) for d in map(json.loads, sys.stdin)]"
    tail -n 3 "$RUNS/runs.log"
    tar -C "$RUNS" --exclude=checkpoints -czf "$OUT/runs.tar.gz" . || status=1
fi
echo "== done (status $status, $SECONDS s): $(ls "$OUT" | tr '\n' ' ')"
grep -h "^model=\|^sec_per_step" "$OUT/train_step.log" || true
exit $status
