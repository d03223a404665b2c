"""Objectness: a dense auxiliary signal for the grounded base's pretraining.

A from-scratch VLM's answer token first attends to every visual token alike; their mean
carries no position, so a location answer ("which cell?", a box) gets no gradient towards
*where* until some visual token already stands out: the location plateau, whose length is a
lottery over the initial draw (README, "Results so far"). Objectness makes "which visual
token holds an object" a first-order signal: a linear scorer reads the final hidden state of
every visual token, a softmax over the image's tokens is fitted to the tokens holding an
object's centre (all of them: the visual tokens precede the query, so they cannot know which
object is asked for). The answer then only has to attend to the salient token and read its
position. A per-token objectness logit is what open-vocabulary detectors put on their image
tokens (OWLv2, arXiv 2306.09683: the objectness head); here it is trained only while
pretraining: the head is not part of the policy, never exported, and its weights
travel in the stage's checkpoints as their own item (`aux`).

Loss per image with target distribution q over its N visual tokens and scores s = h W:

    L_obj = - sum_n q_n log softmax(s)_n

The stage's objective is token-mean NLL + `weight` x the mean of L_obj over the images that
show an object + `attend` x the mean of L_att over the items that name an object:

    L_att = - log sum_{n in R} a_t(n)

where a_t is the attention of one head (head 0 of the last text layer) from the position t
that predicts the answer's first content token, over the sequence, and R the visual tokens
holding the centre of the object(s) the question names. The content token is the first of
`anchor_ids` in the answer (a digit: a box's first coordinate, after the format's "[["), or
the first answer token where none is (a cell letter, a colour word); the last layer's output
at a position feeds only that position's logits, so binding at "[[" would inform nothing
the box says. Only that one position: once part of the answer is written, looking at the
object is easy (the answer says where), and fitting those positions taught the head nothing
about the phrase (measured on the base: mass 0.66 over all answer positions in training,
0.36 at the first on held-out items, what an even spread over the visible objects gives).
Objectness makes the objects salient but the answer must still pick the named one among them; with the question after the image that is a two-step
circuit (bring the phrase to the answer position, then match it against the visual tokens)
whose gradient vanishes until both steps exist: the binding plateau. Supervising where one
head looks trains the match directly; supervised attention is how grounding models align
words with regions (e.g. Qiao et al., "Exploring human-like attention supervision in visual
question answering", AAAI 2018). In the locate probe's three-coloured-squares scene (colour
asked after the image) it took held-out accuracy to 1.00 by step 1250 where objectness alone
reached 0.25 by 2000 (README, `bench/probe_locate.py --attend`).

The match needs visual tokens that carry what the phrase names. The seeds' bases bring a
vision encoder pretrained on image-text pairs (Qwen3-VL's SigLIP-2 tower, Qwen2.5-VL's
CLIP-style ViT); ours starts from nothing and only the answer's loss shapes it, so it learns
colour and size but not shape (a ridge probe on the step-12250 base's visual tokens, held-out
full scenes: colour 0.65, size 0.61, shape 0.21 with the majority class at 0.16). `describe`
adds the dense part of that pretraining, in the phrase's own word space: every visual token
holding an object's centre (the largest, where several are) is fitted to name that object's
attributes through the policy's LM head (tied to the word embeddings),

    L_desc = - (1 / A) sum_a log p(w_a(o_n) | h_n)

for each such token n, object o_n, and attribute a of A (colour, shape, size) with word
w_a; the stage adds `describe` x the mean of L_desc over those tokens. Region-word alignment
of this kind is how GLIP pretrains grounding (Li et al. 2022, arXiv 2112.03857, §3.1). No
parameter is added; visual positions carry no LM loss, so their next-token logits are free.

A box answer must also say *where*, and nothing above asks any hidden state to carry that: the
vision tower's learned position table starts as a 2-D code every token's output holds, but
only the answer's digits ask for it back, and on the step-16500 base a ridge probe reads a
held-out visual token's own column from the tower's output at R^2 0.05 (row 0.03; a fresh
draw 0.99), the named object's centre x from its final hidden states at 0.27, and from the
position that writes the box's first digit at 0.30. `locate` adds the box regression a
detector puts on its region features (DETR's L1 box term, Carion et al. 2020, arXiv
2005.12872, §3.1), on the path the answer reads the named object by: the values v_n of the
attention-supervised head. A linear head reads the normalised box b = (x1, y1, x2, y2) / S
from v_n at every visual token n holding an object's centre (that object's box, the largest
where several), and from what the head brings to the answer, sum_n a_t(n) v_n, at the answer
positions t of an item that names exactly one object, up to the one that writes the
answer's first digit (the named object's box; past it the written digits would give the box
away):

    L_loc = sum_c |b_hat_c(u) - b_c|,   u = v_n (object token) or sum_n a_t(n) v_n (answer)

and the stage adds `locate` x the mean of L_loc over those positions. One head for both asks
the values to hold the box in the code the answer receives. Fitted at the final hidden states
instead, the object tokens learn their boxes but the answer position's own box stayed at
IoU 0.03 held-out after 750 steps on the base: the last layer's attention reads its values
from the layer's input, not from its output. The head is auxiliary like the
objectness scorer (`AuxParam`, never exported); `locate` needs `attend` (the captured head).

Brought to the answer is not yet written by it: on the step-19749 base the value head reads
the named box at the answer position at IoU 0.28 held out, a ridge readout of x1's first digit
from the head's attended values scores 0.25-0.34 (prior 0.16), from the same position's final
hidden state 0.13-0.23 and the LM head 0.16 (`bench/probe_answer.py`): the attention output
reaches the residual stream through the head's output projection, trained when the values
carried no box, and nothing downstream asks for it. `locate_hidden` fits a second linear
head, on the final hidden state (what the LM head reads), to the same box at the same answer
positions,

    L_loc_h = sum_c |b_hat_c(h_t) - b_c|

adding `locate_hidden` x its mean over those positions: the box must travel the output
projection and the last MLP to where the digits are read. Also auxiliary; needs `locate`.

Held in the final hidden state is not yet written either: on the step-29999 base a linear
head reads the named box from the answer's final hidden state at IoU 0.34 and from the
named object's own tokens at 0.60 (2.5 px mean edge error), while the greedy digits reach
0.15, with x1's first digit right 0.39 of the time teacher-forced (`bench/probe_answer.py`).
The digits are a few of the answer's tokens and the token-mean NLL a tenth of the stage's
loss (attribute naming at weight 3 is most of it). `digits` weights the answer's digit
tokens D (`digit_ids`) again in the token mean over the answer tokens T,

    L_nll = (1 / |T|) (sum_{t in T} -log p(y_t) + digits x sum_{t in D} -log p(y_t))

so a digit counts 1 + `digits` times; no parameter is added.

A reasoning trace restates its query before it resolves it (every seed's does), and a policy
that cannot copy the query restates a likely one and boxes its object (`bench/probe_trace.py`
on the demo's SFT: the restated query's content words right 0.37 of the time teacher-forced).
Copying is a two-step circuit (a key that knows its previous token, a query that looks for
the current one there: an induction head, Olsson et al. 2022, arXiv 2209.11895) whose
gradient, like binding's, is weak until both steps exist; on the base `restate` rose from
0.32 to 0.57 of the words in place over 2500 steps at 0.4 of the mix. `copy` supervises the
same captured head where an answer copies its prompt: at the position t that predicts the
answer's k-th token, the head is fitted to look at the prompt position s_k holding that token
(`example_copy`: the prompt's span the answer repeats),

    L_copy = - log a_t(s_k)

and the stage adds `copy` x its mean over those positions. The head's value at s_k then
carries the token to be written. Items without a copied span (every task but `restate` and
`quote`) add nothing; a box item's binding is fitted at other positions (its first digit's),
where a restate or quote item names no object.

Every protocol shows several frames, each after its label ('Frame 17: '), and asks about one
of them ("in frame 17, ..."). The supervised head then has to find the named object in the
named frame: its query must carry the frame number the question gives and the asked frame's
visual tokens a key that says which frame they are in, which they can only get by reading
their label, one attention hop earlier. Nothing fitted that hop: on the step-42249 base the
head put 0.21 of its mass on the asked frame of 4-8 (an even spread 0.18) and 0.65 on the
asked one of two (0.50), while within one labelled frame it puts 0.88 on the named object.
`frame_label` fits each visual token n of a multi-frame prompt to name its frame's label
through the LM head, as L_desc names attributes (the label's digits d in D(n), as written in
the prompt; labels are 0-99):

    L_frame = - (1 / |D(n)|) sum_{d in D(n)} log p(d | h_n)

and the stage adds `frame_label` x its mean over those tokens. A two-digit label is fitted as
a bag of its digits, so 12 and 21 look alike (rarely both shown); 1 and 11 do not (mass on
one digit vs two).

With every frame's tokens naming their label, the head's query must still carry the number
the question asks about, brought to the answer position from the question by a head of an
earlier layer: a second hop that nothing fitted (500 steps of L_frame took the head's mass on
the asked frame of 4-8 from 0.21 to 0.24, an even spread 0.17, while the tokens named their
label 0.91 of the time). `route` fits that hop as L_copy fits a copy: head 0 of the layer
before the last (`route_capture`), at the position t where binding is supervised, is fitted
to look at the question's frame number (its digit tokens Q, `example_route`),

    L_route = - log sum_{s in Q} a'_t(s)

and the stage adds `route` x its mean over the items that ask about a frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxseg.models.family import with_attention
from jaxseg.parallel.placement import place_batch
from jaxseg.parallel.rules import batch_sharding
from jaxseg.rl import aggregation
from jaxseg.rl.logprobs import next_token_logprobs, token_logprobs

from .batch import PolicyBatch
from .steps import forward_logits

HEAD = "objectness_head"  # the attribute the head lives under while a stage trains it
LOCATE_HEAD = "locate_value_head"  # the box regressor's attribute (`LocateHead`)
LOCATE_HIDDEN_HEAD = "locate_hidden_head"  # the same at the answer's final hidden states


class AuxParam(nnx.Param):
    """A parameter trained with the policy in a stage but not part of it: checkpoints keep
    it in their `aux` item, never in `params` (what load and export read)."""


class ObjectnessHead(nnx.Module):
    """Linear scorer over final hidden states `[..., D] -> [...]` (zero init: every token
    alike at first, as the policy's own attention is)."""

    def __init__(self, width: int):
        self.w = AuxParam(jnp.zeros((width,), jnp.float32))

    def __call__(self, hidden: jax.Array) -> jax.Array:
        return hidden.astype(jnp.float32) @ self.w[...]


class LocateHead(nnx.Module):
    """Linear box regressor over the supervised head's values `[..., Dh] -> [..., 4]`: the
    normalised box (x1, y1, x2, y2) / S (zero weights: at first every position says the
    centred box of half the frame's side)."""

    def __init__(self, width: int):
        self.w = AuxParam(jnp.zeros((width, 4), jnp.float32))
        self.b = AuxParam(jnp.asarray([0.25, 0.25, 0.75, 0.75], jnp.float32))

    def __call__(self, hidden: jax.Array) -> jax.Array:
        return hidden.astype(jnp.float32) @ self.w[...] + self.b[...]


def locate_features(probs: jax.Array, values: jax.Array, visual: jax.Array) -> jax.Array:
    """What `LocateHead` reads `[B, L, Dh]`: the captured head's own value `values [B, L, Dh]`
    at visual tokens (`visual [B, L]` > 0), what it brings there, `probs [B, L, L]` @ values,
    elsewhere."""
    brought = jnp.einsum("bqk,bkd->bqd", probs, values.astype(jnp.float32))
    return jnp.where(visual[..., None] > 0, values.astype(jnp.float32), brought)


@nnx.jit
def located_boxes(model: nnx.Module, batch: PolicyBatch, visual: jax.Array) -> dict[str, jax.Array]:
    """Each attached box head's normalised box `[B, L, 4]` at every position of `batch`, by
    attribute name (`LOCATE_HEAD` on the supervised head's values, `LOCATE_HIDDEN_HEAD` on
    the final hidden states; inside `attention_capture`); `visual [B, L]`: 1 on visual
    tokens."""
    forward = lambda m: forward_logits(m, batch, return_hidden=True)  # noqa: E731
    hidden, probs, values = with_attention(forward, model, values=True)
    out = {LOCATE_HEAD: getattr(model, LOCATE_HEAD)(locate_features(probs, values, visual))}
    if hasattr(model, LOCATE_HIDDEN_HEAD):
        out[LOCATE_HIDDEN_HEAD] = getattr(model, LOCATE_HIDDEN_HEAD)(hidden)
    return out


@contextlib.contextmanager
def attached_head(model: nnx.Module, head: nnx.Module | None, name: str = HEAD) -> Iterator[None]:
    """`model` carries `head` (as `model.<name>`, `model.objectness_head` by default) inside
    the block, so the stage's optimizer, placement and checkpoints see it with the policy's
    params; gone after."""
    if head is None:
        yield
        return
    setattr(model, name, head)
    try:
        yield
    finally:
        delattr(model, name)


def centre_cells(boxes: np.ndarray, size: int, rows: int, cols: int) -> np.ndarray:
    """Distribution `[rows * cols]` (row-major, the merged visual tokens' order) uniform over
    the cells holding the centre of a box of `boxes [M, 4]` (x1, y1, x2, y2 in an `size` px
    square image); all zeros when M = 0."""
    target = np.zeros(rows * cols, np.float32)
    cells = _centre_cell_index(boxes, size, rows, cols)
    if len(cells) == 0:
        return target
    target[np.unique(cells)] = 1.0
    return target / target.sum()


def _centre_cell_index(boxes: np.ndarray, size: int, rows: int, cols: int) -> np.ndarray:
    """The row-major merged cell `[M]` holding the centre of each of `boxes [M, 4]`."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    col = np.clip((cx * cols // size).astype(int), 0, cols - 1)
    row = np.clip((cy * rows // size).astype(int), 0, rows - 1)
    return row * cols + col


def centre_attributes(
    boxes: np.ndarray, attributes: np.ndarray, size: int, rows: int, cols: int
) -> np.ndarray:
    """Per merged cell `[rows * cols, A]` (row-major) the attribute values `attributes [M, A]`
    (class indices) of the largest box of `boxes [M, 4]` whose centre it holds; -1 where no
    centre is."""
    out = np.full((rows * cols, np.shape(attributes)[-1]), -1, np.int64)
    owner = _centre_owner(boxes, size, rows, cols)
    out[owner >= 0] = np.asarray(attributes)[owner[owner >= 0]]
    return out


def centre_boxes(boxes: np.ndarray, size: int, rows: int, cols: int) -> np.ndarray:
    """Per merged cell `[rows * cols, 4]` (row-major) the normalised box (x1, y1, x2, y2) /
    `size` of the largest of `boxes [M, 4]` whose centre it holds; NaN where no centre is."""
    out = np.full((rows * cols, 4), np.nan, np.float32)
    owner = _centre_owner(boxes, size, rows, cols)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out[owner >= 0] = boxes[owner[owner >= 0]] / size
    return out


def _centre_owner(boxes: np.ndarray, size: int, rows: int, cols: int) -> np.ndarray:
    """Per merged cell `[rows * cols]` the index into `boxes [M, 4]` of the largest box whose
    centre it holds; -1 where none is."""
    out = np.full(rows * cols, -1, np.int64)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    cells = _centre_cell_index(boxes, size, rows, cols)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for m in np.argsort(area, kind="stable"):  # the largest written last
        out[cells[m]] = m
    return out


def _visual_grid(input_ids, image_grid_thw, image_token_id: int, merge: int, image=None):
    """(positions of the visual tokens [N], frames t, rows, cols) of one single-image
    example, or with `image` = j of the j-th image of a multi-image one (its visual tokens
    are the j-th run of image-pad positions, the images' in order)."""
    ids = np.asarray(input_ids).reshape(-1)
    grid = np.asarray(image_grid_thw).reshape(-1, 3)
    if image is None and len(grid) != 1:
        raise ValueError(f"objectness needs one image per example, got {len(grid)}")
    if image is not None and not 0 <= image < len(grid):
        raise ValueError(f"objectness: image {image} of an example with {len(grid)} images")
    counts = [int(t) * (int(h) // merge) * (int(w) // merge) for t, h, w in grid]
    where = np.flatnonzero(ids == image_token_id)
    if where.size != sum(counts):
        raise ValueError(
            f"objectness: {where.size} image tokens in input_ids for grids {grid.tolist()} "
            f"({sum(counts)} merged tokens)"
        )
    j = 0 if image is None else int(image)
    t, h, w = (int(v) for v in grid[j])
    start = sum(counts[:j])
    return where[start : start + counts[j]], t, h // merge, w // merge


def token_target(
    input_ids: np.ndarray,
    image_grid_thw: np.ndarray,
    boxes: np.ndarray,
    size: int,
    *,
    image_token_id: int,
    merge: int,
    image: int | None = None,
) -> np.ndarray:
    """The objectness target `[L]` of one encoded single-image example (or of its `image`-th
    image: `_visual_grid`): `centre_cells` over the image's merged grid, placed at its visual
    tokens (the image-pad positions, in order); zeros elsewhere."""
    where, t, rows, cols = _visual_grid(input_ids, image_grid_thw, image_token_id, merge, image)
    out = np.zeros(np.asarray(input_ids).reshape(-1).shape, np.float32)
    out[where] = np.tile(centre_cells(boxes, size, rows, cols), t) / t
    return out


@struct.dataclass
class ObjectnessBatch:
    """A PolicyBatch plus target `[B, L]` (each row a distribution over its visual tokens, or
    all zeros for an image without objects), visual `[B, L]` (1 on visual tokens) and
    referent `[B, L]` (> 0 on the visual tokens of the object(s) the question names; zeros
    when it names none or attention is not supervised)."""

    policy: PolicyBatch
    target: jax.Array
    visual: jax.Array
    referent: jax.Array
    describe: jax.Array  # [B, L, A] attribute class per visual token, -1 where none
    locate: jax.Array  # [B, L, 4] normalised box regressed at each position, NaN where none
    copy: jax.Array  # [B, L] prompt position the head is fitted to look at from each, -1: none
    frame: jax.Array  # [B, L, 2] token ids of each visual token's frame label digits, -1: none
    route: jax.Array  # [B, L] 1 on the question's frame number, where the route head should look


def _policy_mask(example: dict, length: int) -> np.ndarray:
    """An encoded example's `policy_mask` `[L]`, checked against its `length` tokens."""
    mask = np.asarray(example["policy_mask"]).reshape(-1)
    if mask.size != length:
        raise ValueError(f"objectness: policy_mask has {mask.size} entries for {length} tokens")
    return mask


def _answer_tokens_in(p: PolicyBatch, token_ids: tuple[int, ...]) -> jax.Array:
    """`[B, L-1]` 1 where the position predicts an answer token (`loss_mask`'s alignment)
    whose id is one of `token_ids`."""
    return p.loss_mask * jnp.isin(p.input_ids[:, 1:], jnp.asarray(token_ids))


def quoted_query_tokens(pieces: Sequence[str], query: str) -> tuple[int, int] | None:
    """Indices [k0, k1) of the answer tokens `pieces` (each decoded alone, in order) whose
    text overlaps `query` inside its first quotation (`json.dumps(query)`, the quote marks
    themselves excluded): where a trace restates its query; None when it never quotes it."""
    full = "".join(pieces)
    quoted = json.dumps(query)
    at = full.find(quoted)
    if at < 0:
        return None
    lo, hi = at + 1, at + len(quoted) - 1
    inside, pos = [], 0
    for k, piece in enumerate(pieces):
        if pos < hi and pos + len(piece) > lo:
            inside.append(k)
        pos += len(piece)
    return (inside[0], inside[-1] + 1) if inside else None


@dataclasses.dataclass(frozen=True)
class ObjectnessLoss:
    """Token-mean NLL + `weight` x mean objectness cross-entropy + `attend` x mean attention
    supervision + `describe` x mean L_desc + `locate` x mean L_loc + `locate_hidden` x mean
    L_loc_h (module docstring; its head `attached_head(..., LOCATE_HIDDEN_HEAD)`) + `copy` x
    mean L_copy + `frame_label` x mean L_frame, as a jaxseg.train.steps `StepLoss`:
    denominators [answer tokens, images with an object, items naming an object, visual
    tokens described, positions located, answer positions located, positions copying the
    prompt, visual tokens labelled with their frame, items asking about a frame] (+ `route` x
    mean L_route: the model runs inside `route_capture` too and examples carry `route` `[L_i]`,
    `example_route`). With `frame_label > 0` examples carry
    `frame` `[L_i, 2]` (`example_frames`) and `numerals` lists the digits' token ids. With
    `copy > 0` examples carry `copy` `[L_i]` (`example_copy`, or all -1 where the answer
    copies nothing).
    With `locate > 0` the model carries a `LocateHead` (`attached_head(..., LOCATE_HEAD)`)
    and examples `locate` `[L_i, 4]` (`example_boxes`). With `describe > 0` examples carry
    `describe` `[L_i, A]` (`example_words`) and `words` lists each attribute's value words'
    token ids. With `weight > 0` the model must carry an `ObjectnessHead` (`attached_head`) and examples their `objectness` target
    `[L_i]`; with `attend > 0` the model runs inside `attention_capture` (the supervised
    head) and examples carry `referent` `[L_i]` (both from `example_target`). `merge`: the
    vision tower's spatial merge (visual tokens per side of a merged cell)."""

    weight: float
    image_token_id: int
    merge: int = 2
    attend: float = 0.0
    describe: float = 0.0
    # (attribute name, token id of each of its values): the words L_desc predicts
    words: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # token ids that carry an answer's content (digits): attention is supervised where the
    # first of them is predicted (the first answer token where the answer has none)
    anchor_ids: tuple[int, ...] = ()
    locate: float = 0.0
    locate_hidden: float = 0.0
    # extra weight of the answer tokens that are digits (`digit_ids`): their NLL counts
    # 1 + `digits` times in the token mean
    digits: float = 0.0
    digit_ids: tuple[int, ...] = ()
    copy: float = 0.0
    frame_label: float = 0.0
    # token ids of the numerals "0" ... "9" as the prompt writes a frame label's digits
    numerals: tuple[int, ...] = ()
    route: float = 0.0

    def __post_init__(self):
        if self.describe > 0 and not self.words:
            raise ValueError("ObjectnessLoss: describe > 0 needs the attribute words' token ids")
        if self.locate > 0 and self.attend <= 0:
            raise ValueError(
                "ObjectnessLoss: locate > 0 reads the attention-supervised head's values; "
                "it needs attend > 0"
            )
        if self.locate_hidden > 0 and self.locate <= 0:
            raise ValueError(
                "ObjectnessLoss: locate_hidden > 0 fits the answer positions `locate` fits; "
                "it needs locate > 0"
            )
        if self.digits > 0 and not self.digit_ids:
            raise ValueError("ObjectnessLoss: digits > 0 needs the digit tokens' ids")
        if (self.frame_label > 0 or self.route > 0) and len(self.numerals) != 10:
            raise ValueError(
                "ObjectnessLoss: frame_label > 0 or route > 0 needs the token ids of the "
                f"numerals 0-9, got {len(self.numerals)}"
            )
        if self.route > 0 and self.attend <= 0:
            raise ValueError(
                "ObjectnessLoss: route > 0 is fitted where binding is (attend's positions); "
                "it needs attend > 0"
            )
        if self.copy > 0 and self.attend <= 0:
            raise ValueError(
                "ObjectnessLoss: copy > 0 fits the attention-supervised head; it needs attend > 0"
            )

    @classmethod
    def for_model(
        cls,
        config,
        weight: float,
        attend: float = 0.0,
        describe: float = 0.0,
        words=(),
        anchor_ids=(),
        locate: float = 0.0,
        locate_hidden: float = 0.0,
        digits: float = 0.0,
        digit_ids=(),
        copy: float = 0.0,
        frame_label: float = 0.0,
        numerals=(),
        route: float = 0.0,
    ) -> ObjectnessLoss:
        """The loss for a policy of `config` (its image token id and spatial merge)."""
        return cls(
            weight,
            int(config.image_token_id),
            merge=int(config.vision.spatial_merge_size),
            attend=attend,
            describe=describe,
            words=tuple((str(a), tuple(int(i) for i in ids)) for a, ids in words),
            anchor_ids=tuple(int(i) for i in anchor_ids),
            locate=locate,
            locate_hidden=locate_hidden,
            digits=digits,
            digit_ids=tuple(int(i) for i in digit_ids),
            copy=copy,
            frame_label=frame_label,
            numerals=tuple(int(i) for i in numerals),
            route=route,
        )

    def example_words(
        self,
        example: dict,
        boxes: np.ndarray,
        attributes: np.ndarray,
        size: int,
        image: int | None = None,
    ) -> np.ndarray:
        """The `describe` field `[L, A]` of an encoded single-image `example` whose image (an
        `size` px square) holds objects `boxes [M, 4]` with `attributes [M, A]` (class
        indices into `words`): `centre_attributes` placed at the visual tokens, -1
        elsewhere (and everywhere when M = 0); with `image` = j, at the j-th image's."""
        a = len(self.words)
        attributes = np.asarray(attributes, np.int64).reshape(-1, a)
        if len(attributes) != len(np.asarray(boxes).reshape(-1, 4)):
            raise ValueError(
                f"objectness: {len(attributes)} attribute rows for "
                f"{len(np.asarray(boxes).reshape(-1, 4))} boxes"
            )
        ids = example["input_ids"]
        where, t, rows, cols = _visual_grid(
            ids, example["image_grid_thw"], self.image_token_id, self.merge, image
        )
        out = np.full((np.asarray(ids).reshape(-1).size, a), -1, np.int64)
        out[where] = np.tile(centre_attributes(boxes, attributes, size, rows, cols), (t, 1))
        return out

    def example_boxes(
        self,
        example: dict,
        boxes: np.ndarray,
        referent: np.ndarray,
        size: int,
        image: int | None = None,
    ) -> np.ndarray:
        """The `locate` field `[L, 4]` of an encoded single-image `example` whose image (an
        `size` px square) holds objects `boxes [M, 4]`: `centre_boxes` at the visual tokens
        (with `image` = j, at the j-th image's), and where the question names exactly one
        object (`referent [1, 4]`) its normalised box at each position that predicts an
        answer token (`policy_mask` shifted by one) up to the one predicting the first of
        `anchor_ids` (a box's first digit; the first answer token where the answer has
        none); NaN elsewhere. Not past it: once a digit
        is written (in training, the true one), reading the box back from it says nothing
        about where the object is."""
        ids = np.asarray(example["input_ids"]).reshape(-1)
        where, t, rows, cols = _visual_grid(
            ids, example["image_grid_thw"], self.image_token_id, self.merge, image
        )
        out = np.full((ids.size, 4), np.nan, np.float32)
        out[where] = np.tile(centre_boxes(boxes, size, rows, cols), (t, 1))
        referent = np.asarray(referent, np.float64).reshape(-1, 4)
        if len(referent) == 1:
            mask = _policy_mask(example, ids.size)
            answer = np.flatnonzero(mask[1:] > 0)  # positions predicting answer tokens
            content = np.flatnonzero(np.isin(ids[answer + 1], self.anchor_ids))
            last = content[0] if len(content) else 0
            out[answer[: last + 1]] = referent[0] / size
        return out

    @staticmethod
    def example_copy(
        example: dict, *, min_tokens: int = 2, answer_range: tuple[int, int] | None = None
    ) -> np.ndarray:
        """The `copy` field `[L]` of an encoded `example` whose answer repeats a span of its
        prompt (a `restate` or `quote` item): at each position predicting an answer token
        (`policy_mask` shifted by one) inside that span, the prompt position of the token it
        writes; -1 elsewhere. The span is the longest run of consecutive answer tokens equal
        to consecutive prompt tokens (the earliest of equal runs), kept when at least
        `min_tokens` long, wherever it sits in the answer: a restatement opens with it, a
        trace's first sentence quotes it ('The query asks for "..."'). A quoted query's
        tokens differ at most at its end ('?".' against '?'), where the run stops.
        `answer_range` (positions [t0, t1) of `input_ids`): only answer tokens there may
        copy (a trace also repeats its prompt's answer format, a longer run than a short
        query; the caller knows where the query is quoted)."""
        ids = np.asarray(example["input_ids"]).reshape(-1)
        mask = _policy_mask(example, ids.size)
        out = np.full(ids.shape, -1, np.int32)
        written = np.flatnonzero(mask > 0)
        if written.size == 0 or written[0] == 0:
            return out
        start = int(written[0])  # the answer's first token; the prompt is ids[:start]
        equal = ids[written][:, None] == ids[None, :start]  # [A, P]
        if answer_range is not None:
            inside = (written >= answer_range[0]) & (written < answer_range[1])
            equal &= inside[:, None]
        run = np.zeros(start, np.int64)  # run[s]: matched tokens ending at (answer k, prompt s)
        best, end_k, end_s = 0, -1, -1
        for k in range(written.size):
            run = np.where(equal[k], np.concatenate([[0], run[:-1]]) + 1, 0)
            s = int(np.argmax(run))
            if run[s] > best:
                best, end_k, end_s = int(run[s]), k, s
        if best < min_tokens:
            return out
        for j in range(best):
            t = written[end_k - j]
            out[t - 1] = end_s - j  # position t-1 predicts the answer token at t
        return out

    def frames_targets(
        self,
        example: dict,
        frame_objects: Sequence[tuple[np.ndarray, np.ndarray]],
        asked: int,
        referent: np.ndarray,
        size: int,
        labels: Sequence[int] = (),
    ) -> dict[str, np.ndarray]:
        """Every field this loss reads, for an encoded multi-image `example` (its images all
        `size` px squares, the j-th holding objects `frame_objects[j]` = (boxes [M_j, 4],
        attributes [M_j, A]) and shown after the label `labels[j]`) whose question names
        `referent [R, 4]` in image `asked`: `objectness` one distribution over every image's
        object tokens (the images with objects weigh alike), `describe` / `locate` each
        image's own, `referent` and the answer positions' box from the asked image,
        `frame` each image's label digits at its visual tokens; no `copy`. One image: the
        single-image fields (and its label)."""
        if len(frame_objects) != len(np.asarray(example["image_grid_thw"]).reshape(-1, 3)):
            raise ValueError(
                f"objectness: {len(frame_objects)} frames' objects for "
                f"{len(np.asarray(example['image_grid_thw']).reshape(-1, 3))} images"
            )
        n = np.asarray(example["input_ids"]).reshape(-1).size
        none = np.zeros((0, 4), np.int64)
        out = {}
        if self.weight > 0:
            per = [
                self.example_target(example, b, size, image=j)
                for j, (b, _) in enumerate(frame_objects)
            ]
            held = sum(1 for t in per if t.any())
            out["objectness"] = (sum(per) / max(held, 1)).astype(np.float32)
        if self.attend > 0:
            out["referent"] = self.example_target(example, referent, size, image=asked)
        if self.describe > 0:
            words = np.full((n, len(self.words)), -1, np.int64)
            for j, (b, a) in enumerate(frame_objects):
                w = self.example_words(example, b, a, size, image=j)
                words = np.where(w >= 0, w, words)
            out["describe"] = words
        if self.locate > 0:
            boxes = np.full((n, 4), np.nan, np.float32)
            for j, (b, _) in enumerate(frame_objects):
                named = referent if j == asked else none
                located = self.example_boxes(example, b, named, size, image=j)
                boxes = np.where(np.isnan(located), boxes, located)
            out["locate"] = boxes
        if self.copy > 0:
            out["copy"] = np.full(n, -1, np.int32)
        if self.frame_label > 0:
            out["frame"] = self.example_frames(example, labels)
        if self.route > 0:
            out["route"] = (
                self.example_route(example, labels[asked])
                if len(labels)
                else np.zeros(n, np.float32)
            )
        return out

    def example_route(self, example: dict, label: int) -> np.ndarray:
        """The `route` field `[L]` of an encoded multi-image example whose question (after
        its last image) asks about the frame labelled `label`: 1.0 at the digit tokens of
        the first number after the last image that is `label`, 0.0 elsewhere."""
        ids = np.asarray(example["input_ids"]).reshape(-1)
        digits = [self.numerals[int(c)] for c in str(int(label))]
        visual = np.flatnonzero(ids == self.image_token_id)
        start = int(visual[-1]) + 1 if visual.size else 0
        numeral = np.isin(ids, self.numerals)
        out = np.zeros(ids.shape, np.float32)
        for s in range(start, ids.size - len(digits) + 1):
            run = ids[s : s + len(digits)].tolist() == digits
            alone = not numeral[s - 1] and (
                s + len(digits) == ids.size or not numeral[s + len(digits)]
            )
            if run and alone:
                out[s : s + len(digits)] = 1.0
                return out
        raise ValueError(f"objectness: the question after the last image never names frame {label}")

    def example_frames(self, example: dict, labels: Sequence[int]) -> np.ndarray:
        """The `frame` field `[L, 2]` of an encoded example whose j-th image follows the label
        `labels[j]` (none: a single unlabelled image): at each visual token of image j the
        token ids of its label's digits (the second -1 for a one-digit label), -1
        elsewhere."""
        ids = np.asarray(example["input_ids"]).reshape(-1)
        out = np.full((ids.size, 2), -1, np.int64)
        if len(labels) and len(labels) != len(np.asarray(example["image_grid_thw"]).reshape(-1, 3)):
            raise ValueError(
                f"objectness: {len(labels)} frame labels for "
                f"{len(np.asarray(example['image_grid_thw']).reshape(-1, 3))} images"
            )
        for j, label in enumerate(labels):
            if not 0 <= int(label) <= 99:
                raise ValueError(f"objectness: frame label {label} outside 0-99")
            digits = [self.numerals[int(c)] for c in str(int(label))]
            where, *_ = _visual_grid(
                ids, example["image_grid_thw"], self.image_token_id, self.merge, j
            )
            out[where, : len(digits)] = digits
        return out

    def item_targets(self, example: dict, item) -> dict[str, np.ndarray]:
        """Every field this loss reads, for the encoded `example` of a base item
        (`jaxseg.train.base_tasks.BaseItem`): a multi-frame one's `frames_targets`; else
        `objectness` on its salient boxes, `referent` on the named object(s), `describe` /
        `locate` on its objects, `copy` where it repeats its prompt (`restate`, `quote`)."""
        size = item.image.shape[0]
        if item.frames:
            labels = [i for i, _ in item.frames]
            return self.frames_targets(
                example, item.frame_objects, item.frame_position, item.referent, size, labels
            )
        out = {}
        if self.weight > 0:
            out["objectness"] = self.example_target(example, item.salient_boxes, size)
        if self.attend > 0:
            out["referent"] = self.example_target(example, item.referent, size)
        if self.describe > 0:  # not for the square task's objects (no attributes)
            boxes = item.objects if len(item.object_attributes) else item.objects[:0]
            out["describe"] = self.example_words(example, boxes, item.object_attributes, size)
        if self.locate > 0:
            out["locate"] = self.example_boxes(example, item.objects, item.referent, size)
        if self.copy > 0:
            out["copy"] = (
                self.example_copy(example)
                if item.task in ("restate", "quote")
                else np.full(np.shape(example["input_ids"]), -1, np.int32)
            )
        if self.frame_label > 0:  # an unlabelled image
            out["frame"] = self.example_frames(example, ())
        if self.route > 0:  # asks about no frame
            out["route"] = np.zeros(np.shape(example["input_ids"]), np.float32)
        return out

    def image_tokens(self, example: dict, image: int | None = None) -> np.ndarray:
        """`[L]` 1.0 at the visual tokens of an encoded example's only image (or of its
        `image`-th), 0.0 elsewhere: an attention target over a whole frame."""
        ids = np.asarray(example["input_ids"]).reshape(-1)
        where, *_ = _visual_grid(
            ids, example["image_grid_thw"], self.image_token_id, self.merge, image
        )
        out = np.zeros(ids.shape, np.float32)
        out[where] = 1.0
        return out

    def example_target(
        self, example: dict, boxes: np.ndarray, size: int, image: int | None = None
    ) -> np.ndarray:
        """The `objectness` field `[L]` of an encoded single-image `example` whose image (an
        `size` px square) holds `boxes [M, 4]`: `token_target` with this loss's token id;
        with `image` = j, on the j-th image of a multi-image example only."""
        return token_target(
            example["input_ids"],
            example["image_grid_thw"],
            boxes,
            size,
            image_token_id=self.image_token_id,
            merge=self.merge,
            image=image,
        )

    def collate(self, batch: PolicyBatch, examples: Sequence[dict]) -> ObjectnessBatch:
        """`batch` (made from `examples`, in order) with their targets padded to its
        length."""
        b, length = batch.input_ids.shape
        if len(examples) != b:
            raise ValueError(f"objectness: {len(examples)} examples for a {b}-row batch")
        wanted = (
            ("objectness", self.weight > 0),
            ("referent", self.attend > 0),
            ("describe", self.describe > 0),
            ("locate", self.locate > 0),
            ("copy", self.copy > 0),
            ("frame", self.frame_label > 0),
            ("route", self.route > 0),
        )
        fields = [f for f, on in wanted if on]
        padded = {f: np.zeros((b, length), np.float32) for f in ("objectness", "referent", "route")}
        padded["describe"] = np.full((b, length, max(len(self.words), 1)), -1, np.int32)
        padded["locate"] = np.full((b, length, 4), np.nan, np.float32)
        padded["copy"] = np.full((b, length), -1, np.int32)
        padded["frame"] = np.full((b, length, 2), -1, np.int32)
        for i, e in enumerate(examples):
            for f in fields:
                if f not in e:
                    raise KeyError(f"example {i} has no field {f!r}")
                v = np.asarray(e[f], padded[f].dtype)
                v = v.reshape(-1, *padded[f].shape[2:])
                padded[f][i, : len(v)] = v
        visual = (np.asarray(batch.input_ids) == self.image_token_id).astype(np.float32)
        return ObjectnessBatch(
            batch,
            padded["objectness"],
            visual,
            padded["referent"],
            padded["describe"],
            padded["locate"],
            padded["copy"],
            padded["frame"],
            padded["route"],
        )

    def weights(self, batch: ObjectnessBatch) -> np.ndarray:
        tokens = float(np.sum(batch.policy.loss_mask))
        images = float(np.sum(np.asarray(batch.target).sum(-1) > 0))
        named = float(np.sum(np.asarray(batch.referent).sum(-1) > 0))
        described = float(np.sum(np.asarray(batch.describe)[..., 0] >= 0))
        located = ~np.isnan(np.asarray(batch.locate)[..., 0])
        answers = float(np.sum(located * (np.asarray(batch.visual) == 0)))
        copied = float(np.sum(np.asarray(batch.copy) >= 0))
        labelled = float(np.sum(np.asarray(batch.frame)[..., 0] >= 0))
        routed = float(np.sum(np.asarray(batch.route).sum(-1) > 0))
        return np.asarray(
            [
                tokens,
                images,
                named,
                described,
                float(np.sum(located)),
                answers,
                copied,
                labelled,
                routed,
            ],
            np.float64,
        )

    def objective(self, model, batch: ObjectnessBatch, denoms):
        p = batch.policy
        forward = lambda m: forward_logits(m, p, return_hidden=True)  # noqa: E731
        routed = self.route > 0
        if self.locate > 0:  # probs [B, L, L], values [B, L, Dh]
            hidden, probs, values, *rest = with_attention(forward, model, values=True, route=routed)
        elif self.attend > 0:  # (copy and route need attend > 0)
            hidden, probs, *rest = with_attention(forward, model, route=routed)
        else:
            hidden = forward(model)
        logits = model.compute_logits(hidden)
        logp = next_token_logprobs(logits, p.input_ids)
        nll = aggregation.aggregate(-logp, p.loss_mask, "token-mean")
        value = nll.total / denoms[0]
        out = {"nll": nll.total}
        if self.digits > 0:  # the answer's digit tokens again, over the same token count
            on_digit = _answer_tokens_in(p, self.digit_ids)
            out["digits_nll"] = -jnp.sum(logp * on_digit)
            out["digit_tokens"] = jnp.sum(on_digit)
            value = value + self.digits * out["digits_nll"] / denoms[0]
        if self.describe > 0:
            desc, hits = self._describe(logits, batch.describe)
            out["describe"] = desc
            out.update(hits)
            value = value + self.describe * desc / jnp.maximum(denoms[3], 1.0)
        if self.frame_label > 0:
            frame, hits = self._frame_label(logits, batch.frame)
            out["frame_label"] = frame
            out["frame_label_hit"] = hits
            value = value + self.frame_label * frame / jnp.maximum(denoms[7], 1.0)
        if self.locate > 0:
            held = ~jnp.isnan(batch.locate[..., 0])  # [B, L]
            target = jnp.where(held[..., None], batch.locate, 0.0)
            boxes = getattr(model, LOCATE_HEAD)(locate_features(probs, values, batch.visual))
            error = jnp.sum(jnp.abs(boxes - target), -1) * held
            out["locate"] = jnp.sum(error)
            out["locate_answer"] = jnp.sum(error * (batch.visual == 0))
            value = value + self.locate * out["locate"] / jnp.maximum(denoms[4], 1.0)
        if self.locate_hidden > 0:  # the same boxes at the answer's final hidden states
            answer = held * (batch.visual == 0)
            boxes = getattr(model, LOCATE_HIDDEN_HEAD)(hidden)
            error = jnp.sum(jnp.abs(boxes - target), -1) * answer
            out["locate_hidden"] = jnp.sum(error)
            value = value + self.locate_hidden * out["locate_hidden"] / jnp.maximum(denoms[5], 1.0)
        if self.weight > 0:
            scores = getattr(model, HEAD)(hidden)  # [B, L]
            scores = jnp.where(batch.visual > 0, scores, -1e9)
            log_q = jax.nn.log_softmax(scores, axis=-1)
            obj = -jnp.sum(batch.target * jnp.where(batch.visual > 0, log_q, 0.0))
            out["objectness"] = obj
            out["objectness_hit"] = jnp.sum(
                (jnp.argmax(scores, -1)[:, None] == jnp.arange(scores.shape[1])[None])
                * (batch.target > 0)
            )
            value = value + self.weight * obj / jnp.maximum(denoms[1], 1.0)
        if self.attend > 0:
            on_referent = (batch.referent > 0).astype(jnp.float32)  # [B, L]
            mass = jnp.einsum("bqk,bk->bq", probs, on_referent)[:, :-1]  # [B, L-1]
            # position t predicts answer token t+1 (loss_mask's alignment): the first one
            # that carries content, else the first one
            before = jnp.pad(p.loss_mask[:, :-1], ((0, 0), (1, 0)))
            first = p.loss_mask * (1.0 - before)
            if self.anchor_ids:
                anchor = _answer_tokens_in(p, self.anchor_ids)
                anchor = anchor * (jnp.cumsum(anchor, axis=1) == 1)  # the first anchor
                first = jnp.where(anchor.sum(-1, keepdims=True) > 0, anchor, first)
            where = first * (on_referent.sum(-1) > 0)[:, None]
            att = -jnp.sum(jnp.log(mass + 1e-6) * where)
            out["attend"] = att
            out["attend_mass"] = jnp.sum(mass * where)
            value = value + self.attend * att / jnp.maximum(denoms[2], 1.0)
        if routed:  # the route head, at the same position, on the question's frame number
            on_number = (batch.route > 0).astype(jnp.float32)
            route_mass = jnp.einsum("bqk,bk->bq", rest[0], on_number)[:, :-1]
            at = first * (on_number.sum(-1) > 0)[:, None]
            out["route"] = -jnp.sum(jnp.log(route_mass + 1e-6) * at)
            out["route_mass"] = jnp.sum(route_mass * at)
            value = value + self.route * out["route"] / jnp.maximum(denoms[8], 1.0)
        if self.copy > 0:  # the head at the prompt token each answer position copies
            held = batch.copy >= 0  # [B, L]
            source = jnp.clip(batch.copy, 0, probs.shape[-1] - 1)
            mass = jnp.take_along_axis(probs, source[..., None], axis=-1)[..., 0]
            out["copy"] = -jnp.sum(jnp.log(mass + 1e-6) * held)
            out["copy_mass"] = jnp.sum(mass * held)
            value = value + self.copy * out["copy"] / jnp.maximum(denoms[6], 1.0)
        return value, out

    def _describe(self, logits: jax.Array, describe: jax.Array):
        """(sum of L_desc over the described tokens, per attribute the number of them whose
        value's word beats the attribute's other words) for logits `[B, L, V]`."""
        held = describe[..., 0] >= 0  # [B, L]
        terms, hits = [], {}
        for a, (name, ids) in enumerate(self.words):
            ids = jnp.asarray(ids)
            cls = jnp.clip(describe[..., a], 0, len(ids) - 1)
            terms.append(token_logprobs(logits, ids[cls]))  # log p(word) [B, L]
            best = jnp.argmax(logits[..., ids], axis=-1)  # among this attribute's words
            hits[f"describe_{name}"] = jnp.sum((best == cls) * held)
        return -jnp.sum(jnp.mean(jnp.stack(terms, -1), -1) * held), hits

    def _frame_label(self, logits: jax.Array, frame: jax.Array):
        """(sum of L_frame over the labelled visual tokens, the number of them whose top
        numeral is one of their label's digits) for logits `[B, L, V]`, `frame` `[B, L, 2]`."""
        held = frame >= 0  # [B, L, 2]
        logp = jnp.stack(
            [token_logprobs(logits, jnp.maximum(frame[..., k], 0)) for k in range(2)], -1
        )
        count = jnp.sum(held, -1)  # [B, L]
        per_token = jnp.sum(logp * held, -1) / jnp.maximum(count, 1)
        numerals = jnp.asarray(self.numerals)
        top = numerals[jnp.argmax(logits[..., numerals], axis=-1)]  # [B, L]
        hit = jnp.any((top[..., None] == frame) & held, -1)
        return -jnp.sum(per_token * (count > 0)), jnp.sum(hit)

    def metrics(self, sums: dict[str, float], denoms: np.ndarray) -> dict[str, float]:
        out = {"nll": sums["nll"] / float(denoms[0])}
        if "digits_nll" in sums:  # mean NLL of the answers' digit tokens
            out["digits_nll"] = sums["digits_nll"] / max(float(sums["digit_tokens"]), 1.0)
        if "objectness" in sums:
            images = max(float(denoms[1]), 1.0)
            out["objectness"] = sums["objectness"] / images
            # share of images whose top-scored visual token holds an object's centre
            out["objectness_hit"] = sums["objectness_hit"] / images
        if "attend" in sums:
            named = max(float(denoms[2]), 1.0)
            out["attend"] = sums["attend"] / named
            # mean attention the supervised head pays to the named object's tokens from the
            # position that predicts the first answer token
            out["attend_mass"] = sums["attend_mass"] / named
        if "describe" in sums:
            described = max(float(denoms[3]), 1.0)
            out["describe"] = sums["describe"] / described
            for name, _ in self.words:  # share of described tokens naming the value right
                out[f"describe_{name}"] = sums[f"describe_{name}"] / described
        if "locate" in sums:  # mean L1 of the normalised box (4 coordinates summed)
            out["locate"] = sums["locate"] / max(float(denoms[4]), 1.0)
            out["locate_answer"] = sums["locate_answer"] / max(float(denoms[5]), 1.0)
        if "locate_hidden" in sums:
            out["locate_hidden"] = sums["locate_hidden"] / max(float(denoms[5]), 1.0)
        if "copy" in sums:  # mean L_copy, and the head's mean attention on the copied token
            copied = max(float(denoms[6]), 1.0)
            out["copy"] = sums["copy"] / copied
            out["copy_mass"] = sums["copy_mass"] / copied
        if "frame_label" in sums:  # mean L_frame, share of tokens naming a digit of their label
            labelled = max(float(denoms[7]), 1.0)
            out["frame_label"] = sums["frame_label"] / labelled
            out["frame_label_hit"] = sums["frame_label_hit"] / labelled
        if "route" in sums:  # mean L_route, the route head's mean mass on the frame number
            routed = max(float(denoms[8]), 1.0)
            out["route"] = sums["route"] / routed
            out["route_mass"] = sums["route_mass"] / routed
        return out

    def place(self, batch: ObjectnessBatch, mesh) -> ObjectnessBatch:
        if mesh is None:
            return batch
        rows = lambda x: jax.device_put(x, batch_sharding(np.shape(x), mesh))  # noqa: E731
        return batch.replace(
            policy=place_batch(batch.policy, mesh),
            target=rows(batch.target),
            visual=rows(batch.visual),
            referent=rows(batch.referent),
            describe=rows(batch.describe),
            locate=rows(batch.locate),
            copy=rows(batch.copy),
            frame=rows(batch.frame),
            route=rows(batch.route),
        )
