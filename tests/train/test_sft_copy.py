"""Copy supervision during SFT (`sft.copy`): the oracle trace's restated query points at the
prompt's query, and the stage trains with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxseg.train.objectness import quoted_query_tokens

# conftest.QUICK_DEMO's run (another conftest may own the module name in a full session)
QUICK = ["sft.steps=2", "sft.num_examples=8", "eval.max_expressions=4", "sft.copy=1.0"]


def test_quoted_query_tokens_covers_the_query_inside_its_first_quotation():
    pieces = ["<think>", "The", " query", " asks", " for", ' "', "the", " red", " circle", '",']
    assert quoted_query_tokens(pieces, "the red circle") == (6, 9)
    # a token that runs past the closing quote still overlaps the query's text
    pieces = [' "', "which", " stops", '?",', " which"]
    assert quoted_query_tokens(pieces, "which stops?") == (1, 4)
    assert quoted_query_tokens(["the", " red", " circle"], "the red circle") is None


@pytest.fixture(scope="module")
def copying_sft(quick_demo_run, tmp_path_factory):
    from jaxseg.config import load_config
    from jaxseg.train.trainer import Experiment

    overrides = [f"data.root={quick_demo_run / 'data'}", *QUICK]
    workdir = tmp_path_factory.mktemp("sft_copy")
    return Experiment(load_config("demo:quick", overrides), workdir, progress=False), workdir


def test_sft_copy_examples_point_the_restated_query_at_the_prompts(copying_sft):
    """Each oracle trace's quoted query (its tokens, all but a trailing '?' at most) points
    at prompt positions holding the same tokens; nothing outside the quotation is fitted
    (the trace's answer format repeats the prompt's too, in longer runs)."""
    from jaxseg.train.objectness import ObjectnessLoss

    exp, _ = copying_sft
    loss = ObjectnessLoss.for_model(exp.model.config, 0.0, 1.0, copy=1.0)
    tok = exp.processor.tokenizer
    pairs = list(exp.cold_start_episodes("train", 6))
    examples = exp.sft_copy_examples("train", 6, loss)
    copied = 0
    for (sample, _), e in zip(pairs, examples, strict=True):
        ids, source = e["input_ids"], e["copy"]
        t = np.flatnonzero(source >= 0)
        if t.size == 0:  # a trace that never quotes its query copies nothing
            assert json.dumps(sample.query) not in tok.decode(ids)
            continue
        copied += 1
        start = int(np.flatnonzero(e["policy_mask"])[0])
        assert (source[t] < start).all() and (ids[source[t]] == ids[t + 1]).all()
        assert sample.query.rstrip("?") in tok.decode(ids[t + 1])
        assert json.dumps(sample.query) in tok.decode(ids[t[0] : t[-1] + 3])
        assert not e["referent"].any()
    assert copied > 0


def test_sft_with_copy_trains_and_records_the_heads_copy_mass(copying_sft):
    exp, workdir = copying_sft
    exp.sft()
    rows = [json.loads(x) for x in (workdir / "sft" / "metrics.jsonl").open()]
    train = [r for r in rows if r["kind"] == "train"]
    assert len(train) == exp.config.sft.steps
    assert all(np.isfinite(r["loss"]) and 0.0 < r["copy_mass"] < 1.0 for r in train)
    # the capture is gone after the stage
    assert exp.model.language_model.layers[-1].self_attn.capture_head is None


def test_sft_copy_refuses_a_teachers_traces(quick_demo_run, tmp_path):
    from jaxseg.config import load_config
    from jaxseg.train.objectness import ObjectnessLoss
    from jaxseg.train.trainer import Experiment

    overrides = [f"data.root={quick_demo_run / 'data'}", *QUICK]
    exp = Experiment(load_config("demo:quick", overrides), tmp_path, progress=False)
    exp.config.sft.traces = str(tmp_path / "cot.jsonl")
    loss = ObjectnessLoss.for_model(exp.model.config, 0.0, 1.0, copy=1.0)
    with pytest.raises(ValueError, match="sft.copy"):
        exp.sft_copy_examples("train", 2, loss)
