#!/usr/bin/env bash
# One prepared smoke test for a single-GPU host: installs the CUDA builds of jax and torch, runs
# the forward and rollout benches (jaxseg vs transformers, same run), a 20-step GRPO of the demo
# with the SAM2 sidecar on the GPU beside JAX, and the sharded = unsharded GRPO update check,
# then prints a one-screen summary. Budget: under 8 minutes after the install.
#
#   bash bench/device_smoke.sh                 # on the GPU host, from a clean clone
#   SMOKE_INSTALL=0 bash bench/device_smoke.sh # jax/torch CUDA builds already installed
#   SMOKE_DEVICE=cpu SMOKE_INSTALL=0 SMOKE_STEPS=2 bash bench/device_smoke.sh   # the CPU subset
#   bash bench/device_smoke.sh --dry-run       # print every command, run nothing
#   SMOKE_ONLY="grpo sharded" ...              # only these steps
#
# JAX and the sidecar's torch share the GPU: JAX must not preallocate it
# (XLA_PYTHON_CLIENT_PREALLOCATE=false), or the sidecar's first CUDA allocation fails.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
DEVICE=${SMOKE_DEVICE:-cuda}        # cuda | cpu
INSTALL=${SMOKE_INSTALL:-1}
STEPS=${SMOKE_STEPS:-20}
OUT=${SMOKE_OUT:-runs/device_smoke}
PY=${SMOKE_PYTHON:-.venv/bin/python}
ONLY=${SMOKE_ONLY:-}
TORCH_INDEX=${SMOKE_TORCH_INDEX:-https://download.pytorch.org/whl/cu126}
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export HF_HUB_OFFLINE=1

((DRY)) && echo "env: XLA_PYTHON_CLIENT_PREALLOCATE=$XLA_PYTHON_CLIENT_PREALLOCATE device=$DEVICE"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

# step NAME LIMIT_S PATTERN CMD...: runs CMD under a time limit, logs to $OUT/NAME.log and adds
# one summary line (status, seconds, the log's last line matching PATTERN).
step() {
    local name=$1 limit=$2 pattern=$3
    shift 3
    if [[ -n "$ONLY" && " $ONLY " != *" $name "* ]]; then
        return 0
    fi
    if ((DRY)); then
        echo "[$name] timeout $limit $*"
        return 0
    fi
    local t0=$SECONDS rc
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    local what
    what=$(grep -E "$pattern" "$OUT/$name.log" | tail -n 1 | cut -c1-150)
    local status=ok
    ((rc == 124)) && status=TIMEOUT
    ((rc != 0 && rc != 124)) && status="FAIL($rc)"
    printf '%-9s %-8s %4ss  %s\n' "$name" "$status" "$((SECONDS - t0))" "${what:-see $OUT/$name.log}" | tee -a "$SUMMARY"
}

if ((INSTALL)) && [[ "$DEVICE" == cuda ]]; then
    step install 900 "Successfully|already" bash -c "
        set -e
        [ -x $PY ] || python3.11 -m venv .venv
        $PY -m pip install -q torch==2.13.0 --index-url $TORCH_INDEX
        $PY -m pip install -q -e '.[torch,dev]'
        $PY -m pip install -q 'jax[cuda12]==0.10.2'
        $PY -m pip install -q --no-deps sam2==1.1.0
        echo Successfully installed"
fi

step devices 120 "jax|torch" "$PY" -c "
import jax, torch
print('jax', jax.__version__, jax.devices())
print('torch', torch.__version__, 'cuda', torch.cuda.is_available())
assert '$DEVICE' != 'cuda' or (jax.default_backend() == 'gpu' and torch.cuda.is_available())"

step forward 150 "sdpa" "$PY" bench/bench_qwen_forward.py --repeats 5
step rollout 180 "speed-up" "$PY" bench/bench_sampler.py --repeats 2
step grpo 300 "grpo.*step|steps|reward" "$PY" -m jaxseg.cli train \
    --config "bench/device_smoke_config.py:device=$DEVICE,steps=$STEPS" \
    --workdir "$OUT/grpo" --stages data,grpo --no-progress
# the mesh check runs on 8 host-CPU devices (one GPU has no mesh to shard over)
step sharded 300 "passed|failed" env JAX_PLATFORMS=cpu \
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
    "$PY" -m pytest -q -p no:cacheprovider tests/parallel/test_grpo_mesh.py -k equals_unsharded

if ((!DRY)); then
    echo "---- device smoke ($DEVICE), load $(cut -d' ' -f1-3 /proc/loadavg), logs in $OUT"
    cat "$SUMMARY"
    grep -q -E "FAIL|TIMEOUT" "$SUMMARY" && exit 1
fi
exit 0
