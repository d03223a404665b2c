"""`jaxseg export`: a trained policy -> an HF checkpoint directory transformers loads.

    jaxseg export --checkpoint runs/demo --out exported/      # newest stage (grpo, else sft)
    jaxseg export --checkpoint runs/demo --stage sft --out exported_sft/

Writes safetensors + config.json (Qwen2_5_VLForConditionalGeneration) and the run's
processor files (tokenizer.json, chat template, image processor config).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="run directory (jaxseg train/demo)")
    parser.add_argument("--stage", choices=("latest", "sft", "grpo"), default="latest")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--layout",
        choices=("released", "transformers5"),
        default="released",
        help="tensor names as in the released Qwen2.5-VL checkpoints or transformers 5",
    )


def run(args: argparse.Namespace) -> int:
    from jaxseg.models.qwen2_5_vl import save_pretrained
    from jaxseg.train.trainer import Experiment

    exp = Experiment.from_workdir(args.checkpoint, progress=False)
    if args.stage == "latest":
        stage = exp.load_latest()
        if stage == "init":
            raise SystemExit(f"{args.checkpoint}: no sft or grpo checkpoint to export")
    else:
        if exp.load_stage(args.stage) is None:
            raise SystemExit(f"{args.checkpoint}: no {args.stage} checkpoint")
        stage = args.stage
    files = save_pretrained(
        exp.model, args.out, reference_dir=exp.workdir / "processor", layout=args.layout
    )
    print(f"exported the {stage} policy to {args.out} ({len(files)} weight file(s))")
    return 0
