"""`jaxseg export`: a trained policy -> an HF checkpoint directory transformers loads.

    jaxseg export --checkpoint runs/demo --out exported/      # newest stage (grpo, else sft)
    jaxseg export --checkpoint runs/demo --stage sft --out exported_sft/

Writes safetensors + config.json (Qwen2_5_VLForConditionalGeneration), generation_config.json
(the run's greedy decoding and stop tokens), a model card (README.md) and the run's processor
files (tokenizer.json, chat template, image processor config); `--dtype` casts the weights.

Nothing is lost: the export is written into a temporary sibling folder and renamed into place
when complete; a non-empty `--out` is refused unless `--overwrite` (which replaces it whole,
so no stale shard survives); `--out` may not be, contain or lie inside the run being read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run directory (jaxseg train/demo)")
    parser.add_argument("--stage", choices=("latest", "pretrain", "sft", "grpo"), default="latest")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--layout",
        choices=("released", "transformers5"),
        default="released",
        help="tensor names as in the released Qwen2.5-VL checkpoints or transformers 5",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default=None,
        help="weights dtype of the export (default: as trained)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the contents of a non-empty --out (refused otherwise)",
    )


def run(args: argparse.Namespace) -> int:
    from jaxseg.paths import as_path, is_remote, local_dir, upload

    # a bucket run (gs://...) is read through epath; a bucket --out is written locally first
    remote_run, remote_out = is_remote(args.checkpoint), is_remote(args.out)
    run_dir = as_path(args.checkpoint) if remote_run else Path(args.checkpoint)
    out = Path(tempfile.mkdtemp(prefix="jaxseg-export-")) / "out" if remote_out else Path(args.out)
    if not (run_dir / "config.json").is_file():
        raise SystemExit(f"{run_dir}: not a jaxseg run directory (no config.json)")
    target = as_path(args.out)
    if remote_out and target.is_dir() and any(target.iterdir()) and not args.overwrite:
        raise SystemExit(f"--out {args.out}: not empty; pass --overwrite or choose another")
    check_target(out, None if remote_run else run_dir, overwrite=args.overwrite)

    from jaxseg.train.trainer import Experiment

    exp = Experiment.from_workdir(run_dir, progress=False)
    if args.stage == "latest":
        stage = exp.load_latest()
        if stage == "init":
            raise SystemExit(f"{args.checkpoint}: no sft or grpo checkpoint to export")
    else:
        if exp.load_stage(args.stage) is None:
            raise SystemExit(f"{args.checkpoint}: no {args.stage} checkpoint")
        stage = args.stage
    info = run_info(exp, stage)
    files = write_export(
        exp.model,
        out,
        run_dir=None if remote_run else run_dir,
        reference_dir=local_dir(exp.workdir / "processor"),
        layout=args.layout,
        dtype=args.dtype,
        overwrite=args.overwrite,
        generation=generation_config(exp),
        card=model_card(info, dtype=args.dtype, layout=args.layout),
    )
    if remote_out:
        if args.overwrite and target.is_dir():
            target.rmtree()
        upload(out, target)
        shutil.rmtree(out.parent, ignore_errors=True)
    print(f"exported the {stage} policy to {target} ({len(files)} weight file(s), {args.dtype})")
    print(f"wrote {target}")
    return 0


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def check_target(out: Path, run_dir: Path | None, *, overwrite: bool) -> None:
    """Refuses an `out` that is, holds or lies inside the run being read, a file, or a
    non-empty folder without `overwrite` (SystemExit naming the path)."""
    o = out.resolve()
    r = run_dir.resolve() if run_dir is not None else None
    if r is not None and (_inside(o, r) or _inside(r, o)):
        raise SystemExit(
            f"--out {out}: {'inside' if _inside(o, r) else 'contains'} the run being exported "
            f"({run_dir}); choose a folder outside it"
        )
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SystemExit(
            f"--out {out}: not empty (stale weight files there would mix with the new ones); "
            "pass --overwrite to replace its contents, or choose an empty folder"
        )


def _cast(model, dtype: str | None):
    """A copy of `model` with its parameters in `dtype` (None or same dtype: `model`)."""
    if dtype is None:
        return model
    import jax
    import jax.numpy as jnp
    from flax import nnx

    target = jnp.dtype(dtype)
    params = nnx.state(model, nnx.Param)
    if all(x.dtype == target for x in jax.tree.leaves(params)):
        return model
    copy = nnx.clone(model)
    cast = jax.tree.map(
        lambda x: x.astype(target) if jnp.issubdtype(x.dtype, jnp.floating) else x,
        nnx.state(copy, nnx.Param),
    )
    nnx.update(copy, cast)
    return copy


def _save_pretrained():
    from jaxseg.models.family import save_pretrained  # the model's own family

    return save_pretrained


def write_export(
    model,
    out: str | Path,
    *,
    run_dir: str | Path | None = None,
    reference_dir: str | Path | None = None,
    layout: str = "released",
    dtype: str | None = None,
    overwrite: bool = False,
    generation: dict | None = None,
    card: str | None = None,
) -> list[Path]:
    """Writes the HF checkpoint into a temporary sibling folder and renames it to `out` once
    complete: a crash leaves `out` as it was; `overwrite` replaces a non-empty `out` whole
    (no stale shard survives). Returns the weight files (under `out`)."""
    out = Path(out)
    check_target(out, Path(run_dir) if run_dir is not None else None, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        files = _save_pretrained()(
            _cast(model, dtype), tmp, reference_dir=reference_dir, layout=layout
        )
        if generation is not None:
            (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        if card is not None:
            (tmp / "README.md").write_text(card)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out.exists():  # empty, or --overwrite: swap, then drop the old contents
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "contents")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / Path(f).name for f in files]


def generation_config(exp) -> dict:
    """transformers' generation defaults of the exported policy: the run's evaluation
    decoding (greedy) and stop tokens."""
    ids = exp.ids
    eos = [ids["eos_token_id"]]
    im_end = exp.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end >= 0 and im_end not in eos:
        eos.append(im_end)
    out = {
        "bos_token_id": ids.get("bos_token_id"),
        "eos_token_id": eos if len(eos) > 1 else eos[0],
        "pad_token_id": ids.get("pad_token_id"),
        "do_sample": False,
        "max_new_tokens": int(exp.config.grpo.max_new_tokens),
    }
    return {k: v for k, v in out.items() if v is not None}


def run_info(exp, stage: str) -> dict:
    """What the model card says about the run: stage, step, protocol, size, held-out J&F."""
    from jaxseg.models.family import family_of

    c = exp.config
    info = {
        "run": str(exp.workdir),
        "stage": stage,
        "protocol": c.protocol.name,
        "init": c.model.init,
        "size": c.model.get("size", ""),
        "steps": int(c[stage].steps) if stage in c and "steps" in c[stage] else None,
        "seed": int(c.seed),
        "architecture": family_of(exp.model).architecture,
    }
    summary = exp.workdir / "eval" / stage / "summary.json"
    if summary.is_file():
        try:
            info["eval"] = json.loads(summary.read_text()).get("overall", {})
        except ValueError:
            pass
    return info


def model_card(info: dict, *, dtype: str | None, layout: str) -> str:
    arch = info.get("architecture", "Qwen2_5_VLForConditionalGeneration")
    ev = info.get("eval") or {}
    scores = ", ".join(
        f"{k} {100 * ev[k]:.1f}" for k in ("JF", "J", "F") if isinstance(ev.get(k), int | float)
    )
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        "tags: [jaxseg, reasoning-video-object-segmentation, grpo]",
        "---",
        "",
        f"# jaxseg policy ({info['stage']}, protocol {info['protocol']})",
        "",
        f"A {arch} vision-language policy trained with jaxseg "
        f"({'cold-start SFT' if info['stage'] == 'sft' else 'SFT then GRPO'}) to reason about "
        "a video and answer with keyframes and boxes that a SAM2 segmenter turns into masks.",
        "",
        f"- run: `{info['run']}` (seed {info['seed']}), stage `{info['stage']}`"
        + (f", {info['steps']} steps" if info.get("steps") else ""),
        f"- base: `{info['init']}`"
        + (f" (preset `{info['size']}`)" if info["init"] == "random" else ""),
        f"- weights: {dtype or 'as trained'}, tensor names `{layout}`",
        f"- held-out J&F / J / F (x100): {scores}" if scores else "- held-out scores: not run",
        "",
        "## Use",
        "",
        "```python",
        f"from transformers import AutoProcessor, {arch}",
        f'model = {arch}.from_pretrained("THIS_DIR")',
        'processor = AutoProcessor.from_pretrained("THIS_DIR")',
        "```",
        "",
        'or `jaxseg.models.family.load_pretrained("THIS_DIR")`. The protocol\'s prompt and '
        "answer format are in jaxseg.protocols; `jaxseg segment` runs the whole loop.",
        "",
        "## Limitations",
        "",
        "Trained by jaxseg on the data of its config (the synthetic benchmark unless "
        "`data.root` says otherwise); scores are on that data's held-out split only.",
        "",
    ]
    return "\n".join(lines)
