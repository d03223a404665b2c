#!/usr/bin/env bash
# Run jaxseg on this machine: one process, or N processes forming one multi-controller JAX job
# (the same contract a pod uses: JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID,
# read by jaxseg.parallel.distributed.initialize). With --devices-per-process, each process
# gets that many simulated CPU devices: a multi-host rehearsal on one box.
#
#   launch/local.sh --config demo --workdir runs/demo
#   launch/local.sh --processes 2 --devices-per-process 4 --config demo --workdir runs/mh
#   launch/local.sh --processes 2 --devices-per-process 4 -- python my_script.py
#   launch/local.sh --dry-run --processes 2 --config demo --workdir runs/mh
#
# Every process's output goes to stdout (and to --log-dir/process_<i>.log when given). If one
# process fails, the others are stopped and the script exits with its status.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

DRY_RUN=0
PROCESSES=1
DEVICES=""
PORT=""
CONFIG="demo"
WORKDIR=""
LOG_DIR=""
PYTHON="${PYTHON:-python}"
CMD=()
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --processes) PROCESSES="$2"; shift 2 ;;
    --devices-per-process) DEVICES="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --workdir) WORKDIR="$2"; shift 2 ;;
    --log-dir) LOG_DIR="$2"; shift 2 ;;
    --set) EXTRA+=(--set "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; CMD=("$@"); break ;;
    *) echo "local.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ! [[ "$PROCESSES" =~ ^[1-9][0-9]*$ ]]; then
  echo "local.sh: --processes must be a positive integer, got '$PROCESSES'" >&2; exit 2
fi
if [[ -n "$DEVICES" ]] && ! [[ "$DEVICES" =~ ^[1-9][0-9]*$ ]]; then
  echo "local.sh: --devices-per-process must be a positive integer, got '$DEVICES'" >&2; exit 2
fi
if [[ ${#CMD[@]} -eq 0 ]]; then
  if [[ -z "$WORKDIR" ]]; then
    echo "local.sh: --workdir is required to run jaxseg train (or give a command after --)" >&2
    exit 2
  fi
  CMD=("$PYTHON" -m jaxseg.cli train --config "$CONFIG" --workdir "$WORKDIR" "${EXTRA[@]+"${EXTRA[@]}"}")
fi
if [[ -z "$PORT" ]]; then
  if [[ $DRY_RUN -eq 1 ]]; then PORT=12355; else
    PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
fi

# The environment of process $1, as NAME=VALUE words.
process_env() {
  local env=()
  if [[ "$PROCESSES" -gt 1 ]]; then
    env+=("JAX_COORDINATOR_ADDRESS=127.0.0.1:$PORT" "JAX_NUM_PROCESSES=$PROCESSES" "JAX_PROCESS_ID=$1")
  fi
  if [[ -n "$DEVICES" ]]; then
    env+=("JAX_PLATFORMS=cpu" "XLA_FLAGS=--xla_force_host_platform_device_count=$DEVICES")
  fi
  if [[ ${#env[@]} -gt 0 ]]; then printf '%s\n' "${env[@]}"; fi
}

PIDS=()
cleanup() {
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup INT TERM

[[ -n "$LOG_DIR" && $DRY_RUN -eq 0 ]] && mkdir -p "$LOG_DIR"
for ((i = 0; i < PROCESSES; i++)); do
  mapfile -t ENV_WORDS < <(process_env "$i")
  if [[ $DRY_RUN -eq 1 ]]; then
    printf 'env'; printf ' %q' "${ENV_WORDS[@]+"${ENV_WORDS[@]}"}" "${CMD[@]}"; printf '\n'
    continue
  fi
  if [[ -n "$LOG_DIR" ]]; then
    env "${ENV_WORDS[@]+"${ENV_WORDS[@]}"}" "${CMD[@]}" > >(tee "$LOG_DIR/process_$i.log") 2>&1 &
  else
    env "${ENV_WORDS[@]+"${ENV_WORDS[@]}"}" "${CMD[@]}" &
  fi
  PIDS+=("$!")
done
[[ $DRY_RUN -eq 1 ]] && exit 0

for ((n = 0; n < ${#PIDS[@]}; n++)); do
  # The first process to finish; a failure stops the others (they would otherwise hang in the
  # next collective, waiting for it).
  set +e; wait -n; STATUS=$?; set -e
  if [[ $STATUS -ne 0 ]]; then
    echo "local.sh: a process exited with status $STATUS; stopping the others" >&2
    cleanup
    wait || true
    exit "$STATUS"
  fi
done
