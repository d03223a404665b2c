"""The grounded base: a tiny Qwen3-VL pretrained from scratch on the synthetic world's base
skills (referring boxes, plurals, "no target", counting, colours,
restating a query; jaxseg.train.base_tasks),
on fresh frames from its own generator seed and split, never the benchmark's videos.

    make base                     # = jaxseg base: train (resumable), evaluate, ship
    jaxseg train --config synthetic_base --workdir runs/base --stages pretrain   # training only

Resumable: re-running continues from the last checkpoint (every 250 steps); the stream of
batches is a pure function of (seed, step), so a resumed run sees what an unbroken one would.
`:arg` knobs: size (tiny), steps, quick (a few steps, CI).
"""

from ml_collections import ConfigDict

from jaxseg.config import load_config, parse_arg
from jaxseg.train.base_tasks import TASKS, CurriculumConfig


def get_config(arg=None):
    a = parse_arg(
        arg,
        size="tiny",
        steps=60000,
        quick=False,
        seed=0,
        initializer="transformers",
        position_init="sincos2d",
    )
    c = load_config(
        f"demo:family=qwen3_vl,base=random,size={a.size},seed={a.seed}"
        + (",quick" if a.quick else "")
    )
    c.model.size = a.size
    # transformers' initial draw (torch seed = `seed`); `initializer=jaxseg` for our own. Neither
    # decides the location plateau for the tiny preset (README, "Results so far": 0 of 7 draws
    # left it without a dense objectness signal)
    c.model.initializer = a.initializer
    # the vision position table starts as a 2-D sine-cosine code as large as the patch
    # embedding: at std 0.02 a token's position is ~20x smaller than its content and the
    # location plateau is long (README); `position_init=normal` for the released init
    c.model.position_init = a.position_init
    # the preset's vision tower (2 blocks of width 64, MLPs of 128) with 2 blocks more and MLPs
    # of 1024: at step 24249 the named object's box reached the answer when the phrase named
    # its colour (IoU 0.57) and not when it named its shape (0.07, the prior), and the visual
    # tokens named their object's shape 0.4 of the time (colour 0.97; 7 shapes). The run grew
    # its tower there (function-preserving, jaxseg.train.learner._restore_grown); a fresh run
    # starts with it. The translation-invariant shape of a 6-15 px object from 16 px patches
    # is MLP work; the extra compute is ~5 GFLOP a step.
    # Patches of 8 px merged 4x4 (a merged token still covers 32 px: the same 16 tokens per
    # 128 px frame): with 16 px patches the tower alone, supervised directly, named shapes at
    # chance after 1500 steps (0.22-0.24, majority 0.15) at depth 4 or width 256; with 8 px
    # patches 0.46 at 1200 (bench/probe_tower.py, README). The committed run re-patched its
    # tower at step 27000 (jaxseg.train.learner._repatch_rule)
    c.model.vision = ConfigDict(
        dict(depth=4, intermediate_size=1024, patch_size=8, spatial_merge_size=4)
    )
    p = c.pretrain
    p.curriculum = "base"
    p.steps = 3 if a.quick else a.steps
    p.batch_size = 4 if a.quick else 32
    p.micro_batch = p.batch_size
    p.learning_rate = 3e-3  # the locate probe's AdamW 3e-3, batch 32, warmup 100
    p.warmup_steps = 0 if a.quick else 100
    # a multi-session run of open length: constant to step 500 (past where objectness leaves
    # the location plateau in the probe), then 1/sqrt decay (1.5e-3 at 2000, 7.5e-4 at 8000);
    # held at 3e-3 the probe's run diverged after it had left the plateau
    p.schedule = "rsqrt"
    p.decay_timescale = 500
    p.weight_decay = 0.0
    p.checkpoint_every = 2 if a.quick else 250
    p.eval_every = 0 if a.quick else 500
    p.eval_items = 8 if a.quick else 128
    p.keep = 3
    p.base = ConfigDict(
        dict(
            seed=7,  # the base's own generator seed; the benchmark uses data.synth.seed
            train_split="base_train",
            eval_split="base_heldout",
            image_sizes=(112, 140),  # what the protocols show (Veason 112, O3 keyframes 140)
            # (first step, task weights) and (first step, scene overrides): location first
            # (the probe's squares, then one world object), then the phrase picks one of 2-3
            # (binding), then boxes, then the full mix on full scenes
            # (jaxseg.train.base_tasks.CurriculumConfig's default).
            phases=tuple((k, dict(v)) for k, v in CurriculumConfig().phases),
            scenes=tuple((k, dict(v)) for k, v in CurriculumConfig().scenes),
            text_first=CurriculumConfig().text_first,  # (first step, P(question first))
            # (first step, (fewest, most) frames a `frames` item shows)
            frames_shown=CurriculumConfig().frames_shown,
            eval_tasks=TASKS,  # every task of the curriculum, held out
            # weight of the objectness loss (jaxseg.train.objectness): a linear scorer on the
            # visual tokens' final hidden states fitted to the tokens holding the asked-for
            # object's centre (question first) or every object's; 0 turns it off. In the
            # locate probe it took 4 of 4 tiny draws off the location plateau by step
            # 250-500, where 0 of 7 left it without (README)
            objectness=1.0,
            # weight of attention supervision (jaxseg.train.objectness): head 0 of the last text
            # layer, from each answer position, is fitted to look at the named object's
            # tokens. Objectness finds the objects; this picks the one the phrase names (the
            # binding plateau: in the locate probe's coloured scene, colour asked after the
            # image, 1.00 by step 1250 with it, 0.25 at 2000 without); 0 turns it off
            attend=1.0,
            # where: "content" = the position predicting the answer's first digit (a box's
            # first coordinate; the last layer's output there feeds only that position's
            # logits, so binding at the format's "[[" told the box nothing), else its first
            # token; "first" = always the first answer token
            attend_at="content",
            # weight of dense attribute supervision (jaxseg.train.objectness's L_desc): each
            # visual token holding an object's centre names its colour, shape and size through
            # the LM head, as a pretrained vision tower would let it. In the locate probe's
            # world scene (2-6 objects, textures; `bench/probe_locate.py --scene world`) the
            # named object's cell at step 1500: 0.39 with it, 0.25 without; 0 turns it off.
            # 3.0 from step 25750 of the committed run: colour and size were named 0.97 / 0.87
            # of the time, shape 0.39 and flat for 1250 steps after the tower grew, and a
            # phrase naming a shape left its box at the prior
            describe=3.0,
            # weight of box regression (jaxseg.train.objectness's L_loc): a linear head reads
            # the normalised box from the attention-supervised head's value at every visual
            # token holding an object's centre, and from what that head brings to the answer
            # positions of an item naming one object, up to the one writing its first digit.
            # On the step-16500 base nothing carried position any more (a visual token's own
            # column from the tower's output: ridge R^2 0.05; the named object's x from the
            # answer position: 0.30), so no box could follow the bound object; 0 turns it off
            locate=1.0,
            # weight of the same box regression on the answer positions' final hidden states
            # (L_loc_h): on the step-19749 base the head brought the box to the answer (IoU
            # 0.28) but the final hidden state, which the LM head reads, did not hold it
            # (x1's first digit: ridge 0.13-0.23 from it, 0.25-0.34 from the head's output,
            # LM 0.16, prior 0.16; bench/probe_answer.py); 0 turns it off
            locate_hidden=1.0,
            # extra weight of the answer's digit tokens in the token-mean NLL (a digit counts
            # 1 + `digits` times; jaxseg.train.objectness): on the step-29999 base a linear head
            # read the named box from the answer's final hidden state at IoU 0.34 while the
            # greedy digits reached 0.15, and the NLL was a tenth of the loss; 0 turns it off.
            # 2.0 from step 30749 of the committed run
            digits=2.0,
            # weight of copy supervision (jaxseg.train.objectness's L_copy): on `restate`
            # items the attention-supervised head, from each answer position, is fitted to
            # look at the prompt token the answer writes next (an induction head's pattern).
            # The copy is what the demo's traces lacked (`bench/probe_trace.py`: the restated
            # query's content words 0.37 teacher-forced after SFT) and `restate` alone taught
            # it slowly (words in place 0.32 -> 0.57 over 2500 steps at 0.4 of the mix);
            # 0 turns it off. 1.0 from step 36500 of the committed run; from step 38000 also
            # on `quote` items (the copy inside a trace's first sentence)
            copy=1.0,
            # weight of frame-label supervision (jaxseg.train.objectness's L_frame): in a
            # multi-frame prompt each visual token names its frame's label ('Frame 17: ')
            # through the LM head, the key the supervised head needs to find the frame a
            # question names. On the step-42249 base that head put 0.21 of its mass on the
            # asked frame of 4-8 (an even spread: 0.18) and boxed them at IoU 0.03, while
            # one labelled frame boxed at 0.25; 0 turns it off. 1.0 from step 42500 of the
            # committed run
            frame_label=1.0,
            # weight of routing supervision (jaxseg.train.objectness's L_route): head 0 of the
            # layer before the last, where binding is supervised, is fitted to look at the
            # question's frame number, the hop that brings it to the supervised head's query.
            # 500 steps of frame_label took that head's mass on the asked frame of 4-8 from
            # 0.21 to 0.24 (even spread 0.17) with the tokens naming their label 0.91; 0
            # turns it off. 1.0 from step 43750 of the committed run
            route=1.0,
        )
    )
    return c
