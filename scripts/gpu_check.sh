#!/usr/bin/env bash
# ONE prepared device call (issue 11 item 7, issue 12 item 6): the CUDA tests, the stacked-seed benchmark at the
# paper's shape, then as much of notebook 05's paper-shape runs (64x64, width 64, seeds stacked) as fits before
# $DEADLINE (default 545 s; the tool gives 15 minutes of device time per task, a machine's start included, and at
# most 10 minutes a command, so one call with timeout_s=600 holds it).
#
# BEFORE the call, here (the call sends the working tree and the carried paths, 64 MiB in all):
#   1. python scripts/carry_celeba.py pack --size 64     -> .carry/celeba64.{jpg,json}: the CelebA train split
#      (16,078 images) at 64 px as JPEG q95 4:4:4, 41.6 MiB (why JPEG of all of it: carry_celeba.py's docstring)
#   2. the committed run records (results/runs 47 MiB, results/cpu 17 MiB) do not fit beside it: move them out of
#      the checkout for the call (tell the other sessions first: their tests may read them), and check:
#        mkdir -p /work/gpu_hold && mv results/runs results/cpu /work/gpu_hold/
#        python scripts/carry_celeba.py budget          (must say "fits"; ~43 MiB)
# THE call (device tool):
#   run(command="bash scripts/gpu_check.sh", carry=[".carry"], timeout_s=600)
# RIGHT AFTER it, whatever it returned:
#   mv /work/gpu_hold/runs /work/gpu_hold/cpu results/ && rmdir /work/gpu_hold
# With what came back (files_at = F):
#   mkdir -p results/paper/gpu_check/05_stacked && cp F/*.txt F/*.log results/paper/gpu_check/05_stacked/
#   cat F/runs.tar.gz* | tar -xzf - -C results/runs     -> results/runs/05_long_training/paper/celeba64/<label>-s<seed>/
#   bash scripts/record_runs.sh results/runs/05_long_training && git commit ...   (finished runs only)
#   then render results/paper/05_long_training/ with the reproduce command summary.txt prints (the runs' --steps
#   and --eval-every are the ones chosen on the device: a render with other values finds no run to reuse):
#   python -m gan_lib reproduce --preset paper --only 05 --no-train --runs-root results/runs --steps S --eval-every E
#
# Stages, in order, each into $OUT (default results/gpu_check; at most 8 files come back, 16 MiB each):
#   nvidia-smi.txt   the GPU, torch, the CPU
#   test_cuda.log    tests/test_cuda.py on $DEVICE: involution, second derivatives, each GAN's step in fp32/bf16,
#                    stacked seeds == single seeds (fp64, fp32), a CLI run, the step in a CUDA graph == eager steps
#                    (igan, sagan, two stacked seeds; bf16 captured; a failed capture falls back), the failed
#                    capture last (meanwhile the carry is staged: CPU only)
#   train_step.log   benchmarks/train_step.py at the paper shape (batch 64 per seed, 64x64, width 64), iGAN case 1,
#                    --seeds 1 4 8 16, for fp32, fp32 --tf32 and bf16 (one process each, $BENCH_SEC s each; a
#                    larger N is skipped when the last one predicts it will not fit), --profile at fp32 N=4.
#                    Estimate from the committed H200 figures (results/paper/gpu_check/train_step.log: one step
#                    0.036 s fp32, 0.051 s bf16; 246 GFLOP, 0.005 s at fp32 matmul speed): with --steps 10
#                    --warmup 3 --rounds 1, N=1 times 13 steps (~0.5 s), each N > 1 26 stacked and 13 single steps:
#                    ~3 s at N=4, ~10 s at N=16 if a stacked step of 16 takes 0.3 s (25% of matmul speed); with
#                    start-up, FLOP count and model builds ~25-40 s per precision.
#                    Then the graphed rows (issue 11 item 4): --cuda-graph --no-floor at --seeds 1 8 ($GRAPH_SEEDS),
#                    variants graph-bf16 and graph-fp32-tf32 (one process each, the same $BENCH_SEC budget and
#                    prediction; N=8 skipped when N=1 was not captured). Each N: 3 eager warm-up steps, the capture
#                    and a first replay, then 10 graphed and 10 eager steps side by side, plus 3 eager warm-up steps;
#                    ~4 s at N=1 (the capture ~1-2 s), ~8 s at N=8 if an eager stacked step of 8 takes 0.15 s; with
#                    start-up and model builds ~15-25 s per variant. On a CPU (the dry run) they are skipped with a
#                    line saying so.
#   runs.log         staging of .carry (scripts/carry_celeba.py stage: sha256 of the carried bytes; the pixels the
#                    runs train on), the calibration and the runs of notebook 05 (scripts/train_experiment.py 05
#                    --preset paper --stack on: 5 configurations as 5 jobs, each its $SEEDS stacked in one
#                    process). Calibration: the same 5 jobs for $CAL_STEPS steps with one evaluation (10,000
#                    samples, SWD and KID on random-conv features: no Inception weights there), which gives the
#                    step time under this concurrency, an evaluation's time and the start-up; the plan is the
#                    largest --steps of $STEP_CHOICES (<= $MAX_STEPS) whose runs end before the deadline with a
#                    20% margin, with evaluations every 500 steps from 2,000 steps on (the notebook's schedule) or
#                    4 of them below, or half as many when that lets the runs go longer. At the deadline the runs
#                    still going get SIGINT (they save a checkpoint and mark themselves interrupted)
#   runs.tar.gz      the run folders without checkpoints (05_long_training/paper/celeba64/...); split into
#                    runs.tar.gz.0, .1, ... of 15 MiB when larger (cat runs.tar.gz* | tar -xz)
#   summary.txt      the benchmark table, the data staged, the plan, every run's state/step/SWD, the render command
#
# Time plan on the H200 (estimates): tests ~55 s, benchmark ~120-200 s (of which the graphed rows ~30-50 s, each
# variant bounded by timeout $BENCH_SEC + 45 s), calibration ~40 s, then ~250 s of runs: 15 runs of the paper shape
# at today's ~28 run-steps/s would reach ~400 steps, at the issue's 500 run-steps/s 8,000; the calibration measures
# it and summary.txt says what was reached (the runs end at $DEADLINE whatever the stages before took).
#
# Without a GPU, a dry run of every stage (tiny shapes, a few steps, the paper preset shrunk in the driver:
# width 8, batch 8, 32 evaluation samples; the configs reach the runs as files, so the runs see the same):
#   DEVICE=cpu QUICK=1 PY=.venv/bin/python CARRY=<a packed carry> STAGE_ROOT=<empty folder> bash scripts/gpu_check.sh
# (tests/test_device_scripts.py runs it on a fake CelebA packed at 64 px). PACK_ONLY=DIR only packs DIR's
# 05_long_training/ into $OUT as above (deleting grids in DIR when over the limit: give it a copy).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-results/gpu_check}"
CARRY="${CARRY:-.carry}"
STAGE_ROOT="${STAGE_ROOT:-/work/shared/data/celeba}"  # the data_root the committed runs record
SIZE=64 PRESET=paper
JOBS="${JOBS:-5}"  # one job per configuration, each its seeds stacked in one process
if [ -n "${QUICK:-}" ]; then  # dry run: tiny shapes, few steps
    THREADS="${THREADS:-1}"
    export OMP_NUM_THREADS="$THREADS"  # on a small shared CPU, spinning OpenMP threads would slow every stage
    DEADLINE="${DEADLINE:-300}" SEEDS="${SEEDS:-0,1}" CAL_STEPS="${CAL_STEPS:-2}" MAX_STEPS="${MAX_STEPS:-4}"
    STEP_CHOICES="${STEP_CHOICES:-4 2}" BENCH_SEC="${BENCH_SEC:-30}" PROFILE_SEEDS=2
    BENCH_SEEDS="1 2 4096"  # 4096: predicted not to fit, skipped
    GRAPH_SEEDS="1 2"
    BENCH=(--steps 1 --warmup 0 --rounds 1 --batch 4 --image-size 32 --width 8 --no-floor)
    TESTS=(-k "dcgan-fp32 or (stacked and igan)")
    PRESET_PATCH='{"width": 8, "batch_size": 8, "eval_num_samples": 32}'
else
    THREADS="${THREADS:-2}"  # torch's CPU threads per job (5 x 2 of the 16 cores; the evaluation's KID is on the CPU)
    DEADLINE="${DEADLINE:-545}" SEEDS="${SEEDS:-0,1,2}" CAL_STEPS="${CAL_STEPS:-40}" MAX_STEPS="${MAX_STEPS:-10000}"
    STEP_CHOICES="${STEP_CHOICES:-$(seq -s ' ' "$MAX_STEPS" -500 500) 400 300 200}" BENCH_SEC="${BENCH_SEC:-40}"
    BENCH_SEEDS="1 4 8 16" PROFILE_SEEDS=4
    GRAPH_SEEDS="1 8"
    BENCH=(--steps 10 --warmup 3 --rounds 1)
    TESTS=()
    PRESET_PATCH=""
fi
TAR_MAX_MIB="${TAR_MAX_MIB:-45}" TAR_PART_MIB="${TAR_PART_MIB:-15}"  # what comes back: 8 files of 16 MiB at most
mkdir -p "$OUT"
WORK="$(mktemp -d)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then  # optional wheels (none needed: the image has torch, torchvision, pillow)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
# scripts/train_experiment.py; QUICK: with the preset shrunk in this driver (the runs get whole configs as files)
if [ -n "$PRESET_PATCH" ]; then
    EXP=("$PY" -c 'import json, runpy, sys
from gan_lib.config import PRESETS
PRESETS[sys.argv[1]].update(json.loads(sys.argv[2]))
sys.argv = ["scripts/train_experiment.py"] + sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")' "$PRESET" "$PRESET_PATCH")
else
    EXP=("$PY" scripts/train_experiment.py)
fi
EXP_ARGS=(05 --preset "$PRESET" --stack on --dataset celeba --data-root "$STAGE_ROOT" --jobs "$JOBS"
          --threads "$THREADS" --seeds "$SEEDS")
status=0
note() { echo "$*" | tee -a "$WORK/runs.log"; }

pack_runs() {  # $1/05_long_training -> $OUT/runs.tar.gz, or runs.tar.gz.0, .1, ... of $TAR_PART_MIB each
    local runs="$1" first="${SEEDS%%,*}" drop
    [ -d "$runs/05_long_training" ] || return 0
    # 64 px grids are ~0.4 MB each; 3 parts of 15 MiB at most (8 files in all): past $TAR_MAX_MIB, the grids of the
    # seeds after the first go (the notebook shows the first seed's), then all grids
    for drop in none others all; do
        case $drop in
            others) note "runs.tar.gz over $TAR_MAX_MIB MiB: packed again without the grids of the seeds after $first"
                    find "$runs/05_long_training" -type d -name samples ! -path "*-s$first/samples" -prune \
                        -exec rm -rf {} + ;;
            all) note "runs.tar.gz over $TAR_MAX_MIB MiB: packed again without any sample grid"
                 find "$runs/05_long_training" -type d -name samples -prune -exec rm -rf {} + ;;
        esac
        tar -C "$runs" --exclude=checkpoints --exclude='*.pt' -czf "$WORK/runs.tar.gz" 05_long_training || status=1
        [ "$(stat -c %s "$WORK/runs.tar.gz")" -le $((TAR_MAX_MIB * 1024 * 1024)) ] && break
    done
    if [ "$(stat -c %s "$WORK/runs.tar.gz")" -gt $((TAR_PART_MIB * 1024 * 1024)) ]; then
        split -b "${TAR_PART_MIB}m" -d -a 1 "$WORK/runs.tar.gz" "$OUT/runs.tar.gz."
    else
        cp "$WORK/runs.tar.gz" "$OUT/runs.tar.gz"
    fi
}
if [ -n "${PACK_ONLY:-}" ]; then  # only pack $PACK_ONLY/05_long_training into $OUT (it may delete grids there)
    pack_runs "$PACK_ONLY"; rm -rf "$WORK"; exit $status
fi

echo "== nvidia-smi ($SECONDS s)"
{ nvidia-smi || echo "no nvidia-smi"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.version.cuda)"
  grep -m1 "model name" /proc/cpuinfo; echo "cores $(nproc)"; } > "$OUT/nvidia-smi.txt" 2>&1
head -n 12 "$OUT/nvidia-smi.txt"

# The carry is staged while the tests run (CPU work: sha256, JPEG decode, the cache entry).
stager=""
if [ -f "$CARRY/celeba$SIZE.json" ]; then
    "$PY" scripts/carry_celeba.py stage --size "$SIZE" --out "$CARRY" --root "$STAGE_ROOT" > "$WORK/stage.log" 2>&1 &
    stager=$!
else
    echo "no $CARRY/celeba$SIZE.json: nothing to stage (python scripts/carry_celeba.py pack --size $SIZE)" \
        > "$WORK/stage.log"
fi

echo "== tests/test_cuda.py ($SECONDS s)"
GAN_LIB_TEST_DEVICE="$DEVICE" timeout 170 "$PY" -m pytest -q -p no:cacheprovider --durations=6 tests/test_cuda.py \
    "${TESTS[@]}" > "$OUT/test_cuda.log" 2>&1 || status=1
tail -n 12 "$OUT/test_cuda.log"

echo "== benchmarks/train_step.py --seeds $BENCH_SEEDS; --cuda-graph --seeds $GRAPH_SEEDS ($SECONDS s)"
: > "$OUT/train_step.log"
# one process each; N after N while the budget lasts. graph-*: --cuda-graph (the step in one CUDA graph, side by side
# with the eager step; CUDA only)
for variant in fp32 fp32-tf32 bf16 graph-bf16 graph-fp32-tf32; do
    seeds="$BENCH_SEEDS"
    if [ "${variant#graph-}" != "$variant" ]; then
        seeds="$GRAPH_SEEDS"
        if [ "$DEVICE" != "cuda" ]; then
            echo "== $variant: skipped, --cuda-graph needs a CUDA device (DEVICE=$DEVICE)" >> "$OUT/train_step.log"
            continue
        fi
    fi
    timeout $((BENCH_SEC + 45)) "$PY" - "$DEVICE" "$variant" "$BENCH_SEC" "$PROFILE_SEEDS" "$seeds" \
        "${BENCH[@]}" >> "$OUT/train_step.log" 2>&1 <<'PY' || status=1
import argparse, signal, sys, time
import torch
sys.path.insert(0, "benchmarks")
import train_step
device, variant, budget, profile_n, seeds, extra = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), \
    [int(n) for n in sys.argv[5].split()], sys.argv[6:]
graph = variant.startswith("graph-")
base = variant[len("graph-"):] if graph else variant
precision, tf32 = base.split("-")[0], base.endswith("-tf32")
known = argparse.ArgumentParser(add_help=False)
for flag, default in (("--steps", 10), ("--warmup", 3), ("--rounds", 2)):
    known.add_argument(flag, type=int, default=default)
k = known.parse_known_args(extra)[0]
series = k.steps + k.warmup  # steps per series; N > 1: rounds + 1 stacked series and rounds single ones
class Late(Exception):
    pass
def late(*_):
    raise Late()
signal.signal(signal.SIGALRM, late)
t0, last, single = time.time(), None, None
for n in seeds:
    left = budget - (time.time() - t0)
    if last is not None:  # the last N's fixed costs, and its steps scaled linearly in N (an upper bound)
        n0, sec0, wall0, run0 = last
        if graph:  # graphed and eager steps (train_step.LAST_RUN: how many of each, each side's s/step)
            work0 = run0["graph_steps"] * sec0 + run0["eager_steps"] * run0["eager_sec_per_step"]
            guess = max(wall0 - work0, 0) + work0 * n / n0
        else:
            steps0 = series * (k.rounds + 1 if n0 > 1 else 1)
            guess = max(wall0 - steps0 * sec0, 0) + series * ((k.rounds + 1) * sec0 * n / n0 + k.rounds * single)
        if graph and not run0["graphed"]:  # the capture failed at a smaller N: it would fail again
            print(f"== {variant} seeds={n}: skipped, not captured at seeds={n0}", flush=True)
            break
        if guess > left:
            print(f"== {variant} seeds={n}: skipped, {guess:.0f} s predicted, {left:.0f} s left", flush=True)
            break
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True  # torch's defaults
    profiling = n == profile_n and variant == "fp32"
    argv = ["--device", device, "--model", "igan", "--precision", precision, "--seeds", str(n), *extra]
    argv += (["--tf32"] if tf32 else []) + (["--profile"] if profiling else [])
    argv += ["--cuda-graph", "--no-floor"] if graph else []  # (the eager rows print the floor of these shapes)
    print(f"== {variant} seeds={n}: train_step.py {' '.join(argv)}", flush=True)
    signal.alarm(max(1, int(left) + 10))
    start = time.time()
    try:
        sec = train_step.main(argv)
    except Late:
        print(f"== {variant} seeds={n}: stopped after {time.time() - start:.0f} s (budget {budget:.0f} s)", flush=True)
        break
    except Exception as e:  # e.g. out of memory: a larger N would fail too (not so a failing profile)
        print(f"== {variant} seeds={n}: failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
        if profiling:
            continue
        break
    finally:
        signal.alarm(0)
    last = (n, sec, time.time() - start, dict(train_step.LAST_RUN))
    single = sec if single is None else single
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
PY
done
grep -E "^== |^sec_per_step|^run_steps_per_sec|^stacking_speedup|^cuda_graph" "$OUT/train_step.log"

echo "== notebook 05 at the paper shape ($SECONDS s; deadline $DEADLINE s)"
[ -n "$stager" ] && { wait "$stager" || status=1; }
cat "$WORK/stage.log" | tee -a "$WORK/runs.log"
study="" RUNS="$WORK/runs" PLAN=""
if grep -q '^staged {' "$WORK/stage.log"; then
    note "-- calibration: $CAL_STEPS steps, one evaluation ($SECONDS s)"
    CAL="$WORK/calibration" t_cal=$SECONDS cal_limit=$((DEADLINE - SECONDS - 60))
    [ "$cal_limit" -gt 180 ] && cal_limit=180
    [ "$cal_limit" -lt 10 ] && cal_limit=10  # (past the deadline already: the plan will say so)
    timeout -s INT -k 30 "$cal_limit" "${EXP[@]}" "${EXP_ARGS[@]}" --runs-root "$CAL" --steps "$CAL_STEPS" \
        --eval-every "$CAL_STEPS" \
        > "$WORK/calibration.log" 2>&1 || status=1
    cat "$WORK/calibration.log" >> "$WORK/runs.log"
    PLAN="$("$PY" - "$CAL" "$WORK/calibration.log" "$CAL_STEPS" "$((SECONDS - t_cal))" "$((DEADLINE - SECONDS))" \
        "$STEP_CHOICES" 2>>"$WORK/runs.log" <<'PY'
import csv, json, math, statistics, sys
from pathlib import Path
cal, log, cal_steps, cal_wall, left, choices = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), \
    float(sys.argv[5]), [int(s) for s in sys.argv[6].split()]
walls = {}
for line in open(log):
    if line.startswith("{"):
        o = json.loads(line)
        walls[o["label"]] = max(walls.get(o["label"], 0.0), float(o.get("wall_sec") or 0.0))
sps, evals = {}, {}
for status in cal.glob("*/*/*/*/status.json"):
    label = status.parent.name.rsplit("-s", 1)[0]
    rows = list(csv.DictReader(open(status.parent / "metrics.csv")))
    late = [float(r["sec_per_step"]) for r in rows[len(rows) // 2:] if r.get("sec_per_step")]
    if late:
        sps[label] = max(sps.get(label, 0.0), statistics.median(late))
    if (status.parent / "evals.csv").exists():
        rows = csv.DictReader(open(status.parent / "evals.csv"))
        evals[label] = evals.get(label, 0.0) + sum(float(r["eval_sec"]) for r in rows)
if not sps or not walls:
    sys.exit("calibration: no step times (see calibration.log)")
step = max(sps.values())  # the slowest configuration ends last
ev = max(evals.values(), default=0.0)  # one evaluation point: every seed of a configuration, one after another
start = max(max(walls.values()) - cal_steps * step - ev, 0.0, cal_wall - cal_steps * step - ev)
def cost(s, e):
    return 1.2 * (start + s * step + math.ceil(s / e) * ev)
# Evaluations: notebook 05's schedule (every 500 from 2,000 steps on, so that 2,000 is one; else 4 of them), or
# half as many when that lets the runs go longer (the notebook reads each run at the reference step and its end).
plans = [(s, e) for s in choices for e in ((500, 1000) if s >= 2000 else (max(1, s // 4), max(1, s // 2)))]
fits = [(s, e) for s, e in plans if cost(s, e) <= left]
s, e = min(fits, key=lambda p: (-p[0], p[1])) if fits else (min(choices), max(1, min(choices) // 2))
print(f"calibration: {step:.4f} s/step (slowest configuration, all {len(sps)} training), {ev:.1f} s per evaluation "
      f"point, {start:.0f} s start-up; {left:.0f} s left -> --steps {s} --eval-every {e} (predicted "
      f"{cost(s, e):.0f} s with a 20% margin{'' if fits else '; NOT predicted to fit: the deadline will stop it'})",
      file=sys.stderr)
print(s, e, round(cost(s, e)))
PY
)" || status=1
fi
if [ -n "$PLAN" ]; then
    read -r STEPS EVAL_EVERY PREDICTED <<< "$PLAN"
    note "-- runs: --steps $STEPS --eval-every $EVAL_EVERY ($SECONDS s; predicted ${PREDICTED} s)"
    setsid "${EXP[@]}" "${EXP_ARGS[@]}" --runs-root "$RUNS" --steps "$STEPS" --eval-every "$EVAL_EVERY" \
        >> "$WORK/runs.log" 2>&1 &
    study=$!
    while kill -0 "$study" 2>/dev/null && [ "$SECONDS" -lt "$DEADLINE" ]; do sleep 2; done
    if kill -0 "$study" 2>/dev/null; then  # SIGINT to its process group: running runs checkpoint, none starts
        note "deadline at $SECONDS s: SIGINT to the runs"
        kill -INT -- "-$study" 2>/dev/null
        for _ in $(seq 25); do kill -0 "$study" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$study" 2>/dev/null
    fi
    wait "$study"; rc=$?
    note "runs exit $rc at $SECONDS s"
    [ "$rc" -eq 0 ] || status=1
    pack_runs "$RUNS"
else
    note "no runs: nothing staged or no plan (see above)"
    status=1
fi
cp "$WORK/runs.log" "$OUT/runs.log"

echo "== summary ($SECONDS s)"
"$PY" - "$OUT" "$RUNS" "$WORK/stage.log" "${STEPS:-}" "${EVAL_EVERY:-}" "$SEEDS" "$STAGE_ROOT" "$status" "$SECONDS" \
    > "$OUT/summary.txt" 2>&1 <<'PY'
import csv, json, re, sys
from pathlib import Path
out, runs, stage_log, steps, every, seeds, root, status, secs = sys.argv[1:10]
print(f"gpu_check: status {status}, {secs} s; files: {' '.join(sorted(p.name for p in Path(out).iterdir()))}")
print("\nbenchmarks/train_step.py, iGAN case 1 (variant seeds: s/stacked step, run-steps/s, speed-up over 1 seed; "
      "graph-*: the step in a CUDA graph, speed-up over the eager step)")
head = None
for line in open(Path(out) / "train_step.log"):
    m = re.match(r"== (\S+) seeds=(\d+)(.*)", line)
    if m:
        head = f"  {m[1]:15s} N={m[2]:>2s}"
        if m[3].startswith(":") and "train_step.py" not in m[3]:
            print(head + m[3])
    elif line.startswith("== ") and ": skipped" in line:
        print("  " + line[3:].rstrip())
    elif head and line.startswith("cuda_graph: not captured"):
        print(head + "  " + line.strip())
    elif head and line.startswith(("run_steps_per_sec=", "stacking_speedup=", "cuda_graph_speedup=", "sec_per_step=")):
        key, value = line.split("=", 1)
        head += f"  {key}={value.split()[0]}"
        if key == "sec_per_step":
            print(head)
print("\ndata:", end=" ")
staged = [json.loads(line[7:]) for line in open(stage_log) if line.startswith("staged {")]
print(json.dumps(staged[0]) if staged else "NOT staged: " + open(stage_log).read()[-400:])
print(f"\nnotebook 05 at the paper shape: --steps {steps or '-'} --eval-every {every or '-'}, seeds {seeds}")
for st in sorted(Path(runs).glob("05_long_training/*/*/*/status.json")):
    s = json.loads(st.read_text())
    ev = list(csv.DictReader(open(st.parent / "evals.csv"))) if (st.parent / "evals.csv").exists() else []
    swd = f"swd {float(ev[-1]['swd']):.1f} at {ev[-1]['step']}" if ev and ev[-1].get("swd") else "no evaluation"
    sps = s.get("sec_per_step")
    print(f"  {st.parent.name:42s} {s.get('state', '?'):11s} step {s.get('step')}/{s.get('steps')}  "
          f"{sps if sps is None else round(sps, 4)} s/step  {swd}  {s.get('device')} {s.get('precision')}")
if steps:
    print("\nafterwards, here: cat runs.tar.gz* | tar -xzf - -C results/runs; "
          "bash scripts/record_runs.sh results/runs/05_long_training; then render with:")
    print(f"  python -m gan_lib reproduce --preset paper --only 05 --no-train --runs-root results/runs --steps {steps} "
          f"--eval-every {every} --seeds {seeds} --data-root {root}")
PY
cat "$OUT/summary.txt"
rm -rf "$WORK"
exit $status
