#!/usr/bin/env bash
# The GPU checks of issues 4 and 5 as ONE prepared call, for a session that is lent a GPU (the device tool gives
# 15 minutes of device time per task, all tries together; this script takes ~5-7 minutes of it):
#
#   1. here, once:  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                       --implementation cp --platform manylinux2014_x86_64 -d .whl pytorch-fid==0.3.0
#      (.whl/ is gitignored; the device image has PyTorch, pandas, matplotlib, tqdm, scipy but not pytorch-fid)
#   2. device tool: run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=600)
#   3. copy what came back (files_at) to results/paper/gpu_check/ and commit it.
#
# What it does, each step's output into $OUT (default results/gpu_check; 7 files, within the tool's limits):
#   nvidia-smi.txt    the GPU
#   test_cuda.log     tests/test_cuda.py: involution on CUDA vs unfold, second derivatives, a training step of
#                     each GAN in fp32 and bf16, a CLI run on CUDA
#   train_step.log    benchmarks/train_step.py at the paper's shape (batch 64, 64x64, width 64): DCGAN, iGAN
#                     case 1, SAGAN, each fp32 and bf16 (last line of each: sec_per_step=...)
#   paper_igan_{config.json,status.json,metrics.csv,train.log}
#                     `python -m gan_lib train --preset paper` (Table 1) for $STEPS steps (default 300) of iGAN
#                     on $DATASET (default synthetic: the step time does not depend on the images; CelebA is not
#                     on the device machine), with one SWD/KID evaluation at the end
#
# Without a GPU, a dry run of the plumbing:  DEVICE=cpu QUICK=1 PY=.venv/bin/python bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
DEVICE="${DEVICE:-cuda}"
STEPS="${STEPS:-300}"
DATASET="${DATASET:-synthetic}"
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [ -n "${QUICK:-}" ]; then  # dry run: tiny shapes, few steps
    BENCH=(--steps 1 --warmup 1 --batch 8 --image-size 32 --width 16 --no-floor); STEPS=4
    TRAIN_SET=(image_size=32 width=8 batch_size=8 max_images=64 eval_num_samples=32)
    MODELS="igan"; TESTS=(-k "dcgan-fp32 or cli")
else
    BENCH=(--steps 20 --warmup 5); TRAIN_SET=(eval_num_samples=2000); MODELS="dcgan igan sagan"; TESTS=()
fi
status=0
{ nvidia-smi || echo "no nvidia-smi"; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
    > "$OUT/nvidia-smi.txt" 2>&1

echo "== tests/test_cuda.py"
GAN_LIB_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py "${TESTS[@]}" 2>&1 \
    | tee "$OUT/test_cuda.log" || status=1

echo "== benchmarks/train_step.py"
: > "$OUT/train_step.log"
for model in $MODELS; do
    for precision in fp32 bf16; do
        "$PY" benchmarks/train_step.py --model "$model" --precision "$precision" --device "$DEVICE" "${BENCH[@]}" 2>&1 \
            | tee -a "$OUT/train_step.log" || status=1
    done
done

echo "== paper preset, iGAN, $STEPS steps on $DATASET"
RUN="$(mktemp -d)/paper_igan"
"$PY" -m gan_lib train --model igan --dataset "$DATASET" --preset paper --out "$RUN" --steps "$STEPS" --no-progress \
    --set device="$DEVICE" precision=auto metrics=swd,kid best_metric=swd eval_every="$STEPS" sample_every="$STEPS" \
    ckpt_every="$STEPS" "${TRAIN_SET[@]}" 2>&1 | tee "$OUT/paper_igan_train.log" | tail -n 8 || status=1
for f in config.json status.json metrics.csv; do
    [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/paper_igan_$f"
done
echo "== done (status $status): $(ls "$OUT" | tr '\n' ' ')"
grep -h "^model=\|^sec_per_step" "$OUT/train_step.log" || true
exit $status
