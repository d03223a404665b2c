"""Fault soak: a GRPO run with the SAM2 sidecar backend under faults must end where
an undisturbed run of the same seed ends.

1. reference: `jaxseg train --stages data,sft,grpo` on this file's config (the quick demo with
   the tiny random SAM2 in its sidecar, a checkpoint every GRPO step, keep 2);
2. soak: the same run's SFT copied into a second workdir, then its GRPO stage run while a
   helper SIGKILLs the sidecar every `--kill-every` seconds, SIGKILLs the trainer twice (after
   GRPO steps `--trainer-kills`), and before the second resume flips 4096 bytes of the newest
   checkpoint's data; the trainer is restarted after each kill;
3. checks: every GRPO step's metrics and the final weights (the checkpoint's per-array
   checksums) equal the reference's, no NaN, the reference's checkpoint steps are all there,
   the damaged step was moved to ckpt/broken/, not deleted. Prints the counts (faults injected,
   sidecar restarts, steps replayed) and writes them to <workdir>/soak.json.

    python bench/fault_soak.py --workdir /tmp/soak            # ~5 min on 2 CPU cores
    python bench/fault_soak.py --workdir /tmp/soak --steps 8 --kill-every 3 --trainer-kills 2,5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SIDE_MARK = "jaxseg.segmenter.sidecar"


def get_config(arg: str | None = None):
    """The soak's run: `jaxseg train --config bench/fault_soak.py:steps=8`."""
    sys.path.insert(0, str(HERE.parents[1] / "configs"))
    import synthetic_tiny

    from jaxseg.config import parse_arg

    a = parse_arg(
        arg,
        steps=6,
        seed=0,
        sft_steps=120,
        sft_lr=5e-3,
        temperature=0.3,
        family="qwen2_5_vl",
    )
    # the family pinned: the soak compares two runs, whatever the demo's default becomes
    c = synthetic_tiny.get_config(f"quick=True,seed={a.seed},family={a.family}")
    # SFT until the policy answers in the protocol's format: only parsed answers send mask
    # requests to the sidecar. Memorising 4 oracle traces is the cheapest way there.
    c.sft.steps = a.sft_steps
    c.sft.num_examples = 4
    c.sft.batch_size = 4
    c.sft.micro_batch = 4
    c.sft.learning_rate = a.sft_lr
    c.sft.warmup_steps = 0
    c.grpo.steps = a.steps
    c.grpo.prompts_per_step = 2
    c.grpo.group_size = 2
    c.grpo.max_new_tokens = 128  # the oracle traces are 55-122 tokens
    c.grpo.temperature = a.temperature  # near the memorised traces: answers that parse
    c.grpo.checkpoint_every = 1
    c.grpo.keep = 2
    c.grpo.eval_every = 0
    c.eval.max_expressions = 4
    c.segmenter.backend = "sam2"
    c.segmenter.config = {
        "model": "tiny",
        "num_threads": 1,
        "seed": 0,
        # restarts per call: a kill every few seconds can land during a restart
        "sidecar": {"max_restarts": 10, "restart_backoff_s": 0.1, "start_timeout_s": 120.0},
    }
    return c


# ------------------------------------------------------------------------------ helpers
def _train(workdir: Path, data: Path, steps: int, stages: str, log) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "jaxseg.cli", "train",
        "--config", f"{HERE}:steps={steps}",
        "--workdir", str(workdir),
        "--stages", stages,
        "--no-progress",
        "--set", f"data.root={data}",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parents[1])


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line torn by the kill
        if rec.get("kind") == "train":
            out.append(rec)
    return out


def _children(pid: int) -> list[tuple[int, str]]:
    """The sidecars of `pid` that are serving (their socket exists: start-up is over)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid != pid or SIDE_MARK.encode() not in cmd:
            continue
        args = cmd.decode(errors="replace").split("\0")
        sock = args[args.index("--socket") + 1] if "--socket" in args else ""
        if sock and os.path.exists(sock):
            out.append((int(entry), sock))
    return out


class SidecarKiller(threading.Thread):
    """SIGKILLs the trainer's serving sidecar at most every `every` seconds while `trainer`
    is set: crashes of a running sidecar, idle or mid-request. Only an instance that has
    answered at least one request since it started is killed (its `ping` says so), so every
    restart makes progress: killing each start-up, or each instance before its first reply,
    is a crash loop the client rightly gives up on after `max_restarts`
    (tests/segmenter/test_sidecar_faults.py covers failed starts)."""

    def __init__(self, every: float):
        super().__init__(daemon=True)
        self.every = every
        self.trainer: subprocess.Popen | None = None
        self.kills = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from jaxseg.segmenter.sidecar import ping

        while not self.stop.wait(self.every):
            proc = self.trainer
            if proc is None or proc.poll() is not None:
                continue
            for pid, sock in _children(proc.pid):
                try:
                    if ping(sock, timeout=2.0).get("served_requests", 0) < 1:
                        continue
                    os.kill(pid, signal.SIGKILL)
                    self.kills += 1
                except (OSError, ValueError, RuntimeError):
                    pass  # gone already, or not answering: the client will notice


def _flip(step_dir: Path, count: int = 4096) -> Path:
    data = [p for p in (step_dir / "params").rglob("*") if p.is_file() and p.parent.name == "d"]
    target = max(data, key=lambda p: p.stat().st_size)
    blob = bytearray(target.read_bytes())
    start = len(blob) // 3
    for i in range(start, min(start + count, len(blob))):
        blob[i] ^= 0xA5
    target.write_bytes(bytes(blob))
    return target


def _steps(ckpt: Path) -> list[int]:
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.is_dir() else []


def _integrity(ckpt: Path, step: int) -> dict:
    return json.loads((ckpt / str(step) / "meta" / "metadata").read_text())["_integrity"]


# ------------------------------------------------------------------------------ soak
def soak(workdir: Path, *, steps: int = 6, kill_every: float = 5.0, trainer_kills=(2, 4)) -> dict:
    """The reference run (skipped stage by stage when <workdir>/reference already finished
    them), then the soak in <workdir>/soak (started afresh); returns the report."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data, ref, run = workdir / "data", workdir / "reference", workdir / "soak"
    t0 = time.monotonic()
    with open(workdir / "reference.log", "ab") as log:
        if _train(ref, data, steps, "data,sft,grpo", log).wait() != 0:
            raise RuntimeError(f"reference run failed; see {workdir / 'reference.log'}")
    t_ref = time.monotonic() - t0

    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    for name in ("config.json", "processor", "sft"):
        src = ref / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, run / name)
    metrics, ckpt = run / "grpo" / "metrics.jsonl", run / "grpo" / "ckpt"
    killer = SidecarKiller(kill_every)
    killer.start()
    counts = {"trainer_kills": 0, "checkpoints_corrupted": 0, "steps_replayed": 0, "starts": 0}
    corrupted: list[dict] = []
    pending = list(trainer_kills)
    t1 = time.monotonic()
    with open(workdir / "soak.log", "wb") as log:  # fresh: its lines are counted below
        while True:
            before = _records(metrics)
            last_done = max((r["step"] for r in before), default=-1)
            started = time.time()
            proc = _train(run, data, steps, "grpo", log)
            counts["starts"] += 1
            killer.trainer = proc
            resumed_at = None
            while proc.poll() is None:
                recs = _records(metrics)
                new = [r["step"] for r in recs if r["time"] >= started]
                if new and resumed_at is None:
                    resumed_at = min(new)
                    counts["steps_replayed"] += max(0, last_done + 1 - resumed_at)
                if pending and new and max(new) >= pending[0]:
                    time.sleep(0.3)  # let a checkpoint save get under way: kill mid-save
                    proc.kill()
                    proc.wait()
                    counts["trainer_kills"] += 1
                    pending.pop(0)
                    break
                time.sleep(0.2)
            killer.trainer = None
            if proc.returncode == 0:
                break
            if proc.returncode != -signal.SIGKILL:
                raise RuntimeError(f"trainer exited {proc.returncode}; see {workdir / 'soak.log'}")
            if counts["trainer_kills"] == 2 and not corrupted:
                newest = _steps(ckpt)[-1]
                path = _flip(ckpt / str(newest))
                corrupted.append({"step": newest, "file": str(path)})
                counts["checkpoints_corrupted"] += 1
    killer.stop.set()
    t_soak = time.monotonic() - t1

    # ------------------------------------------------------------------ checks
    text = (workdir / "soak.log").read_text(errors="replace")
    counts["sidecar_kills"] = killer.kills
    counts["sidecar_restarts"] = text.count("segmenter sidecar lost")
    counts["checkpoint_fallbacks"] = text.count("resume: skipped checkpoint step")
    counts["faults_injected"] = (
        killer.kills + counts["trainer_kills"] + counts["checkpoints_corrupted"]
    )
    want = _records(ref / "grpo" / "metrics.jsonl")
    got = _records(metrics)
    keys = sorted(
        k for k in want[0] if k not in ("time", "step_time") and not k.startswith("time/")
    )
    diffs = []
    if [r["step"] for r in got] != [r["step"] for r in want]:
        diffs.append(f"steps {[r['step'] for r in got]} != {[r['step'] for r in want]}")
    for a, b in zip(want, got):
        for k in keys:
            if a.get(k) != b.get(k):
                diffs.append(f"step {a['step']} {k}: reference {a.get(k)} soak {b.get(k)}")
    nan = [
        (r["step"], k)
        for r in got
        for k, v in r.items()
        if v is None or (isinstance(v, float) and v != v)
    ]
    ref_steps, run_steps = _steps(ref / "grpo" / "ckpt"), _steps(ckpt)
    final = ref_steps[-1]
    same_weights = _integrity(ref / "grpo" / "ckpt", final) == _integrity(ckpt, final)
    broken = (
        sorted(p.name for p in (ckpt / "broken").iterdir()) if (ckpt / "broken").is_dir() else []
    )
    report = {
        **counts,
        "corrupted": corrupted,
        "broken_kept": broken,
        "metric_differences": diffs,
        "nan_or_null": nan,
        "checkpoints_reference": ref_steps,
        "checkpoints_soak": run_steps,
        "final_weights_equal": same_weights,
        "seconds_reference": round(t_ref, 1),
        "seconds_soak": round(t_soak, 1),
        "ok": not diffs
        and not nan
        and same_weights
        and ref_steps == run_steps
        and len(broken) == len(corrupted)
        and counts["trainer_kills"] == len(trainer_kills),
    }
    (workdir / "soak.json").write_text(json.dumps(report, indent=2))
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="runs/fault_soak")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--kill-every", type=float, default=5.0)
    ap.add_argument("--trainer-kills", default="2,4", help="GRPO steps after which to SIGKILL")
    args = ap.parse_args()
    kills = tuple(int(x) for x in args.trainer_kills.split(","))
    report = soak(
        Path(args.workdir), steps=args.steps, kill_every=args.kill_every, trainer_kills=kills
    )
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
