"""The run: `Experiment` builds a run's parts from its config and orchestrates its stages.

One `Experiment` owns everything a run needs, built from an ml_collections config
(`configs/synthetic_tiny.py` documents every field): the processor (tokenizer + image
processor), the policy (on the run's mesh, with its remat policy), the protocol, the mask
backend and the data. Its stages (`pretrain`, `sft`, `grpo`) are pieces (jaxseg.train.pieces)
run by the learner (jaxseg.train.learner), which owns optimizer, LoRA, restore, checkpoints,
metrics and periodic evaluation. Each stage writes into ``<workdir>/<stage>/``: ``ckpt/``
(orbax, atomic, keep-N, with the data iterator's state), ``metrics.jsonl`` + ``tb/``, and
``eval/<stage>_<step>/`` every ``eval_every`` steps (prediction PNGs + summary JSON, and
"eval" records in metrics.jsonl).

Resume: a stage restarted on the same workdir restores params, optimizer state, step and
data position from its latest checkpoint; data order and sampling seeds are functions of
(seed, step), so the continuation is the one the uninterrupted run would have taken. A
finished stage is skipped.

Multi-host (several processes, jaxseg.parallel.hosts; launch/README.md): each process reads
only its share of each step's records (a grain shard per process) and does its share of the
host work; only process 0 writes files.

LoRA (``sft.lora_rank`` / ``grpo.lora_rank`` > 0, jaxseg.train.lora): the stage trains
adapters only; its checkpoints hold the *merged* params (so load_stage, eval and export read
them like a full fine-tune's) plus the adapters (item ``lora``) and their optimizer state.
Resume rebuilds the frozen base exactly as a fresh start does (the initial model for SFT, the
SFT params for GRPO) and restores the adapters onto it; after the stage the model is plain
and holds the merged result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jaxseg.data.chat import ChatEncoder
from jaxseg.data.tokenizer import (
    build_processor,
    build_tokenizer,
    check_processor_matches,
    load_processor,
    save_processor,
    special_token_ids,
)
from jaxseg.models.family import (
    get_family,
    load_pretrained,
    redraw_with_transformers,
    shipped_base,
    with_overrides,
)
from jaxseg.models.remat import set_remat
from jaxseg.parallel.distributed import initialize
from jaxseg.parallel.hosts import Discard, barrier, is_writer, local_mesh, local_replica
from jaxseg.parallel.placement import place, run_mesh
from jaxseg.paths import as_path, local_dir, staged_dir
from jaxseg.protocols.policy import without_meta
from jaxseg.protocols.registry import make_eval_protocol, make_protocol
from jaxseg.sampling.filters import SamplingParams
from jaxseg.sampling.policy import SamplerPolicy
from jaxseg.segmenter import make_backend

from . import grounding
from .batch import make_policy_batch
from .cot import CycledSamples, iter_episodes, oracle_episodes
from .cot import sft_examples_from_jsonl as cot_jsonl_examples
from .evaluate import evaluate_policy
from .learner import Learner
from .metrics import MetricsLogger
from .pieces import GRPOPiece, SupervisedPiece
from .progress import bars, tqdm
from .rollouts import reward_summary, sft_example
from .runconfig import resolve_workdir, save_run_config
from .samples import SampleSource
from .steps import evaluate_loss


def resolve_model_dir(spec: str) -> str:
    """`model.init` / `model.processor`: "shipped:<name>" is a base shipped in the package
    (`jaxseg.models.family.shipped_base`, e.g. "shipped:qwen3_vl_tiny"); anything else as is
    ("random", "synthetic", a local or bucket directory)."""
    spec = str(spec)
    if spec.startswith("shipped:"):
        return str(shipped_base(spec.removeprefix("shipped:")))
    return spec


class Experiment:
    """Builds the run's parts from `config`; `sft()`, `grpo()` and `evaluate()` do the work."""

    def __init__(
        self,
        config: ConfigDict,
        workdir: str | Path,
        *,
        progress: bool = True,
        allow_config_change: bool = False,
    ):
        self.config = resolve_workdir(config, workdir)  # "{workdir}/data/synth" -> the run's
        self.workdir = as_path(workdir)  # local or a bucket (gs://...)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        # Multi-host (launch/): join the jax.distributed job first; a no-op for one process.
        # Every process computes; only process 0 writes files (hosts.is_writer).
        self.process = initialize(config.get("distributed"))
        # a re-run with another config is refused, naming the keys (runconfig.py)
        save_run_config(self.workdir, config, allow_change=allow_config_change, write=is_writer())
        self.processor = self._processor()
        self.encoder = ChatEncoder(self.processor)
        self.ids = special_token_ids(self.processor.tokenizer)
        self.mesh = run_mesh(config)  # None: one device; else params/opt/batches on the mesh
        remat = config.model.get("remat", "none")
        self.model = place(set_remat(self._model(), remat), self.mesh)
        check_processor_matches(self.processor, self.model.config, self.workdir / "processor")
        self.protocol = make_protocol(config.protocol.name, **dict(config.protocol.config))
        # evaluation sees only what a user has: no GT-chosen frames
        self.eval_protocol = make_eval_protocol(
            config.protocol.name,
            dict(config.protocol.config),
            dict(config.protocol.get("eval_config") or {}),
        )
        self.backend = make_backend(config.segmenter.backend, dict(config.segmenter.config))
        self.oracle_backend = make_backend("oracle")
        self._sources: dict[str, SampleSource] = {}
        self.learner = Learner(
            self.workdir,
            mesh=self.mesh,
            seed=int(config.seed),
            logger=self._logger,
            progress=progress,
        )

    @classmethod
    def from_workdir(cls, workdir: str | Path, *, progress: bool = True) -> Experiment:
        """Rebuilds a run's experiment from its saved config.json (e.g. for export)."""
        path = as_path(workdir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: not a jaxseg run directory")
        return cls(ConfigDict(json.loads(path.read_text())), workdir, progress=progress)

    def load_latest(self) -> str:
        """Loads the newest trained params (grpo, sft, pretrain); returns the stage or "init"."""
        for stage in ("grpo", "sft", "pretrain"):
            if self.load_stage(stage) is not None:
                return stage
        return "init"

    # ------------------------------------------------------------------ parts
    def _processor(self):
        """The run's processor (`workdir/processor`, written on the first start): the synthetic
        tokenizer's for the tower's patch / merge size (`model.vision`), or `model.processor`'s.
        A synthetic one saved for another patch / merge size (the tower was re-patched since)
        is rebuilt: it holds no learned state."""
        path = self.workdir / "processor"
        saved = (path / "tokenizer.json").is_file()
        barrier("processor")  # every host has looked before process 0 writes
        src = resolve_model_dir(self.config.model.processor)
        vision = self.config.model.get("vision") or {}
        patch = dict(
            patch_size=vision.get("patch_size"), merge_size=vision.get("spatial_merge_size")
        )
        if saved:
            processor = load_processor(local_dir(path))
            improc = processor.image_processor
            stale = any(
                v is not None and int(getattr(improc, k)) != int(v) for k, v in patch.items()
            )
            if not (stale and src == "synthetic"):
                return processor
            tqdm.write(
                f"{path}: saved for patch {improc.patch_size} / merge {improc.merge_size}; "
                f"rebuilding it for model.vision's patch {patch['patch_size']} / merge "
                f"{patch['merge_size']}"
            )
        processor = (
            build_processor(
                build_tokenizer(), family=self.config.model.get("family", "qwen2_5_vl"), **patch
            )
            if src == "synthetic"
            else load_processor(local_dir(src))
        )
        if is_writer():
            with staged_dir(path) as local:
                save_processor(processor, local)
        return processor

    def _model(self) -> nnx.Module:
        """The policy: `model.init` (an HF checkpoint dir, any family) or a random
        `model.family` preset of `model.size` for the run's tokenizer (`model.vision` /
        `model.text`: overrides of its tower's fields, `with_overrides`), its weights drawn by
        our initialiser or, with `model.initializer = "transformers"`, by transformers'."""
        m = self.config.model
        dtype = jnp.dtype(m.dtype)
        param_dtype = jnp.dtype(m.get("param_dtype", m.dtype))  # e.g. fp32 masters, bf16 compute
        init = resolve_model_dir(m.init)
        if init != "random" and self.mesh is not None:
            from jaxseg.parallel.weights import load_sharded  # each device reads its slices

            return load_sharded(local_dir(init), self.mesh, dtype=dtype, param_dtype=param_dtype)
        if init != "random":
            return load_pretrained(local_dir(init), dtype=dtype, param_dtype=param_dtype)
        ids = self.ids
        family = get_family(m.get("family", "qwen2_5_vl"))
        cfg = family.preset(
            m.size,
            vocab_size=len(self.processor.tokenizer),
            image_token_id=ids["image_token_id"],
            video_token_id=ids["video_token_id"],
            vision_start_token_id=ids["vision_start_token_id"],
            vision_end_token_id=ids["vision_end_token_id"],
            eos_token_id=ids["eos_token_id"],
            pad_token_id=ids["pad_token_id"],
            bos_token_id=ids["bos_token_id"],
        )
        cfg = with_overrides(cfg, vision=m.get("vision"), text=m.get("text"))
        model = family.build(
            cfg, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(int(self.config.seed))
        )
        initializer = m.get("initializer", "jaxseg")
        if initializer not in ("jaxseg", "transformers"):
            raise ValueError(
                f"model.initializer={initializer!r}: choose 'jaxseg' or 'transformers'"
            )
        if initializer == "transformers":  # transformers' own draw
            model = redraw_with_transformers(
                model, int(self.config.seed), dtype=dtype, param_dtype=param_dtype
            )
        position_init = m.get("position_init", "normal")
        if position_init != "normal":
            if family.init_position_table is None:
                raise ValueError(
                    f"model.position_init={position_init!r}: {family.name} has no learned "
                    "vision position table (use 'normal')"
                )
            family.init_position_table(model, position_init)
        return model

    def source(self, split: str) -> SampleSource:
        if split not in self._sources:
            d = self.config.data
            self._sources[split] = SampleSource(d.root, split, format=d.format)
        return self._sources[split]

    def policy(
        self,
        *,
        sampling: SamplingParams,
        max_new_tokens: int,
        seed: int,
        first_row: int | None = None,
    ) -> SamplerPolicy:
        """The sampler-backed policy over the whole mesh; with `first_row` (GRPO rollouts) a
        host-local one instead: this process's copy of the weights on its own devices, its
        rows drawing the random streams of rows `first_row, ...` of the whole step's batch."""
        model, mesh = self.model, self.mesh
        if first_row is not None and self.mesh is not None and self.process.count > 1:
            model, mesh = local_replica(self.model, self.mesh, place), local_mesh(self.mesh)
        policy = SamplerPolicy.for_model(
            model,
            self.processor,
            sampling=sampling,
            max_new_tokens=max_new_tokens,
            seed=seed,
        )
        policy.sampler.mesh = mesh  # rollout rows and KV cache over the batch axes
        policy.sampler.first_row = first_row or 0
        return policy

    def _logger(self, stage: Path) -> MetricsLogger | Discard:
        return MetricsLogger.from_config(stage, self.config) if is_writer() else Discard()

    def batches(self, examples: list[dict], micro_batch: int, collate=None) -> list:
        """Encoded examples -> PolicyBatches of at most `micro_batch` rows, in order.
        `collate(batch, its examples)`: what a `StepLoss` adds to each (e.g. objectness
        targets, jaxseg.train.objectness)."""
        out = []
        for i in range(0, len(examples), micro_batch):
            chunk = examples[i : i + micro_batch]
            batch = make_policy_batch(
                chunk, config=self.model.config, pad_id=self.ids["pad_token_id"]
            )
            out.append(batch if collate is None else collate(batch, chunk))
        return out

    # ------------------------------------------------------------------ state
    def load_stage(self, stage: str) -> int | None:
        """Loads the params of `stage`'s latest checkpoint into the model (None if absent)."""
        return self.learner.load(stage, self.model)

    # ------------------------------------------------------------------ SFT
    def sft_examples(self, split: str, count: int) -> list[dict]:
        """Cold-start examples: `sft.traces` = "oracle" (default): the protocol's scripted
        oracle on `count` training samples; a path: the traces of a JSONL that `jaxseg data
        cot` wrote (a filtered teacher's), `count` of them (cycling)."""
        traces = str(self.config.sft.get("traces", "oracle") or "oracle")
        if traces != "oracle":
            return cot_jsonl_examples(
                traces, self.source(split), self.encoder, count, self.config.protocol.name
            )
        if self.config.sft.get("tasks"):  # e.g. RCoT-Seg's SFT-28k: its two stage tasks
            from .stages import sft_task_protocols

            out = []
            for protocol, n in sft_task_protocols(self.config, count):
                pairs = self.cold_start_episodes(split, n, protocol)
                out += [sft_example(ep, self.encoder) for _, ep in pairs]
            return out
        return [e for _, e in self.oracle_examples(split, count)]

    def oracle_examples(self, split: str, count: int):
        """(sample, its oracle trace encoded as an SFT example) for the first `count` samples
        of `split` (cycling), under the run's protocol."""
        for sample, episode in self.cold_start_episodes(split, count):
            yield sample, sft_example(episode, self.encoder)

    def cold_start_episodes(self, split: str, count: int, protocol=None):
        """(sample, oracle episode) for the first `count` samples of `split` (cycling); the
        one source of cold-start traces (jaxseg.train.cot; `jaxseg data cot` writes them)."""
        samples = CycledSamples(self.source(split), count)
        make = functools.partial(
            oracle_episodes,
            protocol or self.protocol,
            backend=self.oracle_backend,
            seed=int(self.config.seed),
        )
        return iter_episodes(make, samples, progress=bars(self.progress))

    def pretrain(self) -> dict[str, Any]:
        """Stage 0 (optional, `pretrain.steps`): the base skills a from-scratch policy lacks.
        `pretrain.curriculum = "grounding"`: referring grounding on a fixed set of benchmark
        training frames (jaxseg.train.grounding); `"base"`: the grounded base's curriculum on
        an endless stream of fresh synthetic frames (jaxseg.train.base_tasks). Then the
        held-out evaluation of that curriculum."""
        c = self.config.get("pretrain")
        if c is None or c.steps <= 0:
            return {"stage": "pretrain", "skipped": True, "step": 0}
        if c.get("curriculum", "grounding") == "base":
            from jaxseg.models.family import attention_capture, route_capture

            from .objectness import (
                LOCATE_HEAD,
                LOCATE_HIDDEN_HEAD,
                LocateHead,
                ObjectnessHead,
                attached_head,
            )

            weight = float(c.base.get("objectness", 0.0))
            attend = float(c.base.get("attend", 0.0))
            describe = float(c.base.get("describe", 0.0))
            locate = float(c.base.get("locate", 0.0))
            locate_hidden = float(c.base.get("locate_hidden", 0.0))
            digits = float(c.base.get("digits", 0.0))
            copy = float(c.base.get("copy", 0.0))
            frame_label = float(c.base.get("frame_label", 0.0))
            route = float(c.base.get("route", 0.0))
            text = self.model.config.text
            head = ObjectnessHead(text.hidden_size) if weight > 0 else None
            boxes = LocateHead(text.head_dim) if locate > 0 else None
            written = LocateHead(text.hidden_size) if locate_hidden > 0 else None
            loss = None
            if any(w > 0 for w in (weight, attend, describe, locate, digits, copy, frame_label)):
                loss = self._base_loss(
                    weight,
                    attend,
                    describe,
                    locate,
                    locate_hidden,
                    digits,
                    copy=copy,
                    frame_label=frame_label,
                    route=route,
                )
            stream = functools.partial(self._base_stream, loss)
            capture = attention_capture(self.model) if attend > 0 else contextlib.nullcontext()
            routing = route_capture(self.model) if route > 0 else contextlib.nullcontext()
            with (
                routing,
                attached_head(self.model, head),
                attached_head(self.model, boxes, LOCATE_HEAD),
                attached_head(self.model, written, LOCATE_HIDDEN_HEAD),
                capture,
            ):
                piece = SupervisedPiece(self, "pretrain", c, stream, loss=loss)
                out = self.learner.run(piece)
            path = self.workdir / "pretrain" / "base_eval.json"
            if is_writer():
                path.write_text(json.dumps(self.base_eval(), indent=2))
            return out

        def examples():
            items = grounding.grounding_items(
                self.source(self.config.data.train_split),
                c.num_examples,
                image_size=c.image_size,
                seed=int(self.config.seed),
            )
            return [
                self.encoder.encode(
                    without_meta(grounding.conversation(x, with_answer=True))
                ).as_example()
                for x in items
            ]

        out = self.learner.run(SupervisedPiece(self, "pretrain", c, examples))
        path = self.workdir / "pretrain" / "grounding.json"
        if not path.is_file() and is_writer():
            path.write_text(json.dumps(self.grounding_eval(), indent=2))
        return out

    def _base_curriculum(self):
        """The base curriculum `pretrain.base` configures (jaxseg.train.base_tasks)."""
        from .base_tasks import CurriculumConfig

        b = self.config.pretrain.base
        return CurriculumConfig(
            phases=tuple((int(k), dict(v)) for k, v in b.phases),
            scenes=tuple((int(k), dict(v)) for k, v in b.scenes),
            text_first=tuple((int(k), float(v)) for k, v in b.get("text_first", ((0, 0.0),))),
            image_sizes=tuple(b.image_sizes),
            frames_shown=tuple(
                (int(k), (int(lo), int(hi)))
                for k, (lo, hi) in b.get("frames_shown", CurriculumConfig.frames_shown)
            ),
        )

    def _base_loss(
        self,
        weight: float,
        attend: float,
        describe: float,
        locate: float = 0.0,
        locate_hidden: float = 0.0,
        digits: float = 0.0,
        copy: float = 0.0,
        frame_label: float = 0.0,
        route: float = 0.0,
    ):
        """The base stage's `ObjectnessLoss` for this policy and tokenizer (its attribute
        words, attention anchors, digit tokens and numerals) with these weights."""
        from .objectness import ObjectnessLoss

        return ObjectnessLoss.for_model(
            self.model.config,
            weight,
            attend,
            describe=describe,
            words=self._attribute_words() if describe > 0 else (),
            anchor_ids=self._attend_anchors(),
            locate=locate,
            locate_hidden=locate_hidden,
            digits=digits,
            digit_ids=self._digit_ids if digits > 0 else (),
            copy=copy,
            frame_label=frame_label,
            numerals=self._numerals() if frame_label > 0 or route > 0 else (),
            route=route,
        )

    def _numerals(self) -> tuple[int, ...]:
        """Token ids of "0" ... "9", each one token as a prompt's numbers are written (the
        Qwen tokenizers split numbers into single digits)."""
        tokenizer = self.processor.tokenizer
        out = []
        for d in "0123456789":
            ids = tokenizer.encode(d, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"the tokenizer writes the numeral {d!r} as {ids}, not one token")
            out.append(int(ids[0]))
        return tuple(out)

    def _attend_anchors(self) -> tuple[int, ...]:
        """`pretrain.base.attend_at`: "content" (the default) supervises attention where the
        answer's first digit is predicted (ObjectnessLoss.anchor_ids), "first" at the first
        answer token."""
        at = self.config.pretrain.base.get("attend_at", "content")
        if at not in ("content", "first"):
            raise ValueError(f"pretrain.base.attend_at={at!r}: choose 'content' or 'first'")
        return self._digit_ids if at == "content" else ()

    @functools.cached_property
    def _digit_ids(self) -> tuple[int, ...]:
        """Token ids made of ASCII digits only (with or without the tokenizer's space
        mark): where a box answer's content starts (ObjectnessLoss.anchor_ids); one scan
        of the vocabulary per experiment."""
        vocab = self.processor.tokenizer.get_vocab()
        digits = set("0123456789")
        out = []
        for piece, i in vocab.items():
            text = piece.replace("\u0120", "").strip()
            if text and set(text) <= digits:
                out.append(int(i))
        return tuple(sorted(out))

    def _attribute_words(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(attribute, token id of each value's word) for the base's attributes
        (base_tasks.ATTRIBUTES): the first token of " <word>", as a phrase writes it."""
        from .base_tasks import ATTRIBUTES

        tok = self.processor.tokenizer
        out, seen = [], {}
        for name, values in ATTRIBUTES:
            ids = []
            for word in values:
                first = tok.encode(" " + word, add_special_tokens=False)[0]
                if first in seen:
                    raise ValueError(
                        f"pretrain.base.describe: the tokenizer starts {word!r} and "
                        f"{seen[first]!r} with the same token; their words cannot be told apart"
                    )
                seen[first] = word
                ids.append(int(first))
            out.append((name, tuple(ids)))
        return tuple(out)

    def _base_stream(self, objectness=None):
        """(step, indices) -> those items of that step's batch of the base curriculum,
        encoded: a pure function of (seed, step), so a resume sees the same stream
        (every host draws the whole step, then encodes only its share). `objectness`: the
        stage's `ObjectnessLoss`, whose target each example then carries."""
        from .base_tasks import BaseStream

        c = self.config.pretrain
        b = c.base
        stream = BaseStream(
            seed=int(b.seed), split=b.train_split, curriculum=self._base_curriculum()
        )

        def examples_at(step: int, indices: list[int]) -> list[dict]:
            items = stream.batch(step, c.batch_size)
            out = []
            for i in indices:
                example = self.encoder.encode(
                    without_meta(items[i].conversation(with_answer=True))
                ).as_example()
                if objectness is not None:
                    example.update(objectness.item_targets(example, items[i]))
                out.append(example)
            return out

        return examples_at

    def base_eval(
        self, count: int | None = None, step: int | None = None, tasks: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Greedy answers of the current policy on held-out base items (videos of the base's
        eval split, never trained on, full scenes), per task, next to each task's trivial
        prior, image first (the protocols' order). Given the training `step`: while the
        curriculum still shows simpler scenes, also `cell@scenes` (the cell task on held-out
        frames drawn like that step's, in the order most of its items have: progress inside
        an early phase, which full scenes do not show), while it asks questions first,
        `square@text_first`, and while `frames` items show fewer frames than the protocols'
        4-8, `frames@shown` (as many as training shows now). `tasks`: only these (default
        `pretrain.base.eval_tasks`)."""
        from jaxseg.data.synth.world import SynthConfig

        from . import base_tasks

        c = self.config.pretrain
        b = c.base
        n = int(count or c.eval_items)
        policy = self.policy(sampling=SamplingParams(temperature=0.0), max_new_tokens=64, seed=0)
        full = base_tasks.FRAMES_SHOWN
        runs = [(task, task, None, False, full) for task in (tasks or b.eval_tasks)]
        if step is not None:
            curriculum = self._base_curriculum()
            scenes = curriculum.synth_at(step, SynthConfig())
            share = curriculum.text_first_at(step)
            if scenes != SynthConfig():  # in the order most items have now
                runs.append(("cell@scenes", "cell", scenes, share >= 0.5, full))
            if share > 0:
                runs.append(("square@text_first", "square", None, True, full))
            shown = curriculum.frames_shown_at(step)
            if "frames" in b.eval_tasks and shown != full:  # as many frames as training shows
                runs.append(("frames@shown", "frames", None, False, shown))
        out: dict[str, Any] = {}
        for name, task, synth, first, shown in runs:
            items = base_tasks.eval_items(
                int(b.seed),
                b.eval_split,
                n,
                task,
                synth=synth,
                text_first=first,
                shown_frames=shown,
            )
            texts = policy.respond(policy.start([x.conversation(with_answer=False) for x in items]))
            out[name] = base_tasks.score(task, texts, items)
            supervised = any(float(b.get(k, 0.0)) > 0 for k in ("attend", "describe"))
            if supervised and name in ("cell", "box", "colour", "frames", "frames@shown"):
                out[name].update(self._named_attention(items))
            copying = all(float(b.get(k, 0.0)) > 0 for k in ("copy", "attend"))
            if name in ("restate", "quote") and copying:
                out[name]["copy_mass"] = self._copy_attention(items)
        return out

    def _named_attention(self, items) -> dict[str, float]:
        """What the supervised heads (jaxseg.train.objectness) do on held-out `items` (each
        naming an object). With `attend`: where the supervised attention head looks from
        the position it is supervised at (`attend_at`): its mass on the named object's
        tokens (`attend_named`, the loss's own `attend_mass`), and the mass a head spread
        evenly over the visible objects' tokens would put there (`attend_named_uniform`:
        finding the objects without binding the phrase); on multi-frame items (`frames`)
        over every frame's objects, and its mass on the asked frame's tokens
        (`attend_frame`) next to an even spread over the frames (`attend_frame_uniform`:
        finding the frame the question names); with `frame_label`, the share of their
        visual tokens whose top numeral is a digit of their frame's label (`frame_named`);
        with `route`, the route head's mass on the question's frame number (`route_mass`).
        With `describe`: the share of
        visual tokens holding an object's centre whose colour / shape / size word the LM
        head ranks first among that attribute's words (`describe_colour`, ...). With
        `locate`, while its head is attached (the stage's own evaluations): the IoU of the
        box the head reads at the last answer position it is fitted at (before any digit of
        the answer is written) with the named object's (`locate_iou`): whether the answer
        position knows where the object is, whatever its digits say; with `locate_hidden`
        also the same from its final hidden state (`locate_hidden_iou`): whether it reaches
        where the LM head reads."""
        from jaxseg.models.family import attention_capture, route_capture

        from .objectness import LOCATE_HEAD

        b = self.config.pretrain.base
        attend = float(b.get("attend", 0.0)) > 0
        describe = float(b.get("describe", 0.0)) > 0
        frame_label = float(b.get("frame_label", 0.0))
        route = float(b.get("route", 0.0)) if attend else 0.0
        loss = self._base_loss(
            0.0, float(attend), float(describe), frame_label=frame_label, route=route
        )
        located = getattr(self.model, LOCATE_HEAD, None)
        examples, uniform, frames = [], [], []
        for it in items:
            e = self.encoder.encode(without_meta(it.conversation(with_answer=True))).as_example()
            e.update(loss.item_targets(e, it))
            size = it.image.shape[0]
            if not attend:  # collate reads only the fields the loss fits
                e["referent"] = loss.example_target(e, it.referent, size)
            held = [b for b, _ in it.frame_objects] if it.frames else [it.objects]
            objects = sum(
                int(np.sum(loss.example_target(e, b, size, image=j if it.frames else None) > 0))
                for j, b in enumerate(held)
            )
            uniform.append(float(np.sum(e["referent"] > 0)) / max(objects, 1))
            if it.frames:
                frames.append({**e, "referent": loss.image_tokens(e, it.frame_position)})
            examples.append(e)

        capture = attention_capture(self.model) if attend else contextlib.nullcontext()
        routing = route_capture(self.model) if route > 0 else contextlib.nullcontext()
        with capture, routing:
            batches = self.batches(examples, 16, collate=loss.collate)
            metrics = evaluate_loss(self.model, batches, loss)
            if located is not None and attend:
                located_iou = self._located_iou(items, examples, batches, loss)
            if frames and attend:  # the head's mass on the asked frame's tokens
                on_frame = evaluate_loss(
                    self.model, self.batches(frames, 16, collate=loss.collate), loss
                )
        out = {}
        if attend:
            out["attend_named"] = metrics["attend_mass"]
            out["attend_named_uniform"] = float(np.mean(uniform))
        if frames and attend:
            out["attend_frame"] = on_frame["attend_mass"]
            out["attend_frame_uniform"] = float(np.mean([1.0 / len(it.frames) for it in items]))
        for name, _ in loss.words:
            out[f"describe_{name}"] = metrics[f"describe_{name}"]
        if frames and frame_label > 0:  # visual tokens naming a digit of their frame's label
            out["frame_named"] = metrics["frame_label_hit"]
        if frames and route > 0:  # the route head's mass on the question's frame number
            out["route_mass"] = metrics["route_mass"]
        if located is not None and attend:
            out.update(located_iou)
        return out

    def _copy_attention(self, items) -> float:
        """The supervised attention head's mean mass, from each answer position of held-out
        `items` whose answer repeats the prompt (`restate`, `quote`), on the prompt token it
        copies (the loss's own `copy_mass`; ObjectnessLoss.example_copy)."""
        from jaxseg.models.family import attention_capture

        loss = self._base_loss(0.0, 1.0, 0.0, copy=1.0)
        examples = []
        for it in items:
            e = self.encoder.encode(without_meta(it.conversation(with_answer=True))).as_example()
            e["referent"] = np.zeros(np.shape(e["input_ids"]), np.float32)  # names no object
            e["copy"] = loss.example_copy(e)
            examples.append(e)
        with attention_capture(self.model):
            batches = self.batches(examples, 16, collate=loss.collate)
            return float(evaluate_loss(self.model, batches, loss)["copy_mass"])

    def _located_iou(self, items, examples, batches, loss) -> dict[str, float]:
        """Mean IoU of each attached box head's box at each item's last answer position
        `locate` is fitted at (`ObjectnessLoss.example_boxes`) with the item's named object's
        box: `locate_iou` (`LOCATE_HEAD`, from what the supervised head brings) and, with
        `locate_hidden`, `locate_hidden_iou` (`LOCATE_HIDDEN_HEAD`, from the final hidden
        state the LM head reads); `batches`: the examples' `ObjectnessBatch`es of 16, in
        order (inside the capture)."""
        from jaxseg.eval.metrics import box_iou

        from .objectness import LOCATE_HEAD, LOCATE_HIDDEN_HEAD, located_boxes

        names = {LOCATE_HEAD: "locate_iou", LOCATE_HIDDEN_HEAD: "locate_hidden_iou"}
        boxes_loss = dataclasses.replace(loss, locate=1.0)
        ious: dict[str, list[float]] = {}
        for start, batch in zip(range(0, len(items), 16), batches, strict=True):
            chunk, rows = items[start : start + 16], examples[start : start + 16]
            heads = located_boxes(self.model, batch.policy, batch.visual)
            ids = np.asarray(batch.policy.input_ids)
            for i, (it, e) in enumerate(zip(chunk, rows, strict=True)):
                target = boxes_loss.item_targets(e, it)["locate"]
                fitted = np.flatnonzero(
                    ~np.isnan(target[:, 0]) & (ids[i, : len(target)] != loss.image_token_id)
                )
                if len(it.referent) != 1 or len(fitted) == 0:
                    continue
                size = it.image.shape[0]
                for head, boxes in heads.items():
                    box = np.asarray(boxes)[i, fitted[-1]][None] * size
                    iou = float(box_iou(box, it.referent[:1])[0, 0])
                    ious.setdefault(names[head], []).append(iou)
        return (
            {k: float(np.mean(v)) for k, v in ious.items()}
            if ious
            else {"locate_iou": float("nan")}
        )

    def grounding_eval(self, count: int | None = None) -> dict[str, float]:
        """Greedy single-frame boxes of the current policy on held-out frames vs GT."""
        c = self.config.pretrain
        items = grounding.grounding_items(
            self.source(self.config.data.eval_split),
            count or c.eval_items,
            image_size=c.image_size,
            seed=1,
        )
        policy = self.policy(sampling=SamplingParams(temperature=0.0), max_new_tokens=24, seed=0)
        texts = policy.respond(
            policy.start([grounding.conversation(x, with_answer=False) for x in items])
        )
        return grounding.grounding_iou(texts, items)

    def sft(self) -> dict[str, Any]:
        """Cold-start SFT on the protocol's traces. With `sft.copy` > 0 also copy supervision
        on the trace's restated query (jaxseg.train.objectness, L_copy): the policy's
        attention head 0 of the last layer, from each position writing the quoted query, is
        fitted to the prompt token it repeats (`sft_copy_examples`)."""
        if (self.workdir / "pretrain" / "ckpt").is_dir():
            self.load_stage("pretrain")  # SFT starts from the grounding-pretrained base
        c = self.config.sft
        split = self.config.data.train_split
        copy = float(c.get("copy", 0.0))
        if copy <= 0:
            examples = lambda: self.sft_examples(split, c.num_examples)  # noqa: E731
            return self.learner.run(SupervisedPiece(self, "sft", c, examples))
        from jaxseg.models.family import attention_capture

        from .objectness import ObjectnessLoss

        # attend = 1 only turns the head's capture on: no SFT example names an object
        loss = ObjectnessLoss.for_model(self.model.config, 0.0, 1.0, copy=copy)
        examples = lambda: self.sft_copy_examples(split, c.num_examples, loss)  # noqa: E731
        with attention_capture(self.model):
            return self.learner.run(SupervisedPiece(self, "sft", c, examples, loss=loss))

    def sft_copy_examples(self, split: str, count: int, loss) -> list[dict]:
        """`sft_examples` of the oracle traces, each with `copy` `[L]` (`loss.example_copy`
        limited to the answer tokens inside the trace's first quotation of its query:
        `quoted_query_tokens`; all -1 where it never quotes it) and an empty `referent`."""
        from .objectness import quoted_query_tokens

        c = self.config.sft
        if str(c.get("traces", "oracle") or "oracle") != "oracle" or c.get("tasks"):
            raise ValueError(
                "sft.copy > 0 reads the oracle traces of the run's protocol; it does not "
                "support sft.traces (a teacher's JSONL) or sft.tasks"
            )
        tok = self.processor.tokenizer
        out = []
        for sample, e in self.oracle_examples(split, count):
            ids = np.asarray(e["input_ids"]).reshape(-1)
            written = np.flatnonzero(np.asarray(e["policy_mask"]) > 0)
            pieces = [tok.decode([int(i)]) for i in ids[written]]
            span = quoted_query_tokens(pieces, sample.query)
            e["referent"] = np.zeros(ids.shape, np.float32)
            e["copy"] = (
                loss.example_copy(e, answer_range=(written[span[0]], written[span[1] - 1] + 1))
                if span is not None
                else np.full(ids.shape, -1, np.int32)
            )
            out.append(e)
        return out

    # ------------------------------------------------------------------ GRPO
    def grpo(self) -> dict[str, Any]:
        """GRPO: one run (grpo/), or the runs `grpo.stages` names one after another (e.g.
        RCoT-Seg's "aks,ktg", jaxseg.train.stages): each starts from the previous one's weights,
        all keep the SFT policy as the KL reference, the last writes grpo/."""
        from .stages import grpo_stages

        out: dict[str, Any] = {}
        for run in grpo_stages(self):
            if self.load_stage("sft") is None and self.config.grpo.require_sft:
                raise FileNotFoundError(
                    f"{self.workdir / 'sft' / 'ckpt'}: no SFT checkpoint (run the sft stage "
                    "first, or set grpo.require_sft=False to start GRPO from the initial policy)"
                )
            reference = nnx.clone(self.model)  # frozen KL reference = the SFT policy
            if run.start_from != "sft" and self.load_stage(run.start_from) is None:
                raise FileNotFoundError(f"{self.workdir / run.start_from}: the previous GRPO stage")
            out = self.learner.run(GRPOPiece(self, run, reference))
        return out

    # ------------------------------------------------------------------ eval
    def periodic_eval(self, name: str, step: int) -> dict[str, Any]:
        """The held-out record of stage `name` after `step` (the learner calls it every
        `eval_every` steps): pretraining's own evaluation, else `eval.periodic_expressions`
        greedy episodes into eval/<name>_<step + 1>/."""
        if name == "pretrain":
            if self.config.pretrain.get("curriculum", "grounding") == "base":
                return {
                    f"{task}/{k}": v
                    for task, row in self.base_eval(step=step).items()
                    for k, v in row.items()
                    if isinstance(v, float)
                }
            return self.grounding_eval()
        limit = int(self.config.eval.get("periodic_expressions", 16))
        summary = self.evaluate(f"{name}_{step + 1}", limit=limit)
        row = {k: summary["overall"].get(k) for k in ("JF", "J", "F", "R")}
        row["reward"] = summary["reward"].get("reward/total")
        return row

    def evaluate(
        self, tag: str, *, split: str | None = None, limit: int | None = None, policy=None
    ) -> dict:
        """Greedy episodes of the current policy (or of `policy`, e.g. a scripted prior) on
        the held-out split, scored by jaxseg.eval, written to eval/<tag>."""
        e = self.config.eval
        split = split or self.config.data.eval_split
        source = self.source(split)
        n = min(len(source), limit or e.max_expressions)
        if policy is None:
            policy = self.policy(
                sampling=SamplingParams(temperature=0.0),
                max_new_tokens=self.config.grpo.max_new_tokens,
                seed=0,
            )
        out = self.workdir / "eval" / tag
        if not is_writer():  # the same episodes run everywhere; process 0 keeps the files
            out = Path(tempfile.mkdtemp(prefix=f"jaxseg-eval-{jax.process_index()}-"))
        summary, episodes = evaluate_policy(
            self.eval_protocol,
            policy,
            source,
            backend=self.backend,
            out_dir=out,
            positions=list(range(n)),
            chunk=e.chunk,
            progress=self.progress,
        )
        summary["reward"] = reward_summary(episodes)
        summary["tag"] = tag
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        with (out / "traces.jsonl").open("w") as f:
            for ep in episodes:
                f.write(json.dumps(ep.trace.to_json()) + "\n")
        if not is_writer():
            shutil.rmtree(out)
        return summary
