"""Averaging conventions per benchmark, checked on hand-made per-expression scores."""

import math

import pytest

from jaxseg.eval.aggregate import ExpressionScore, format_table, summarize


def s(subset, j, f, r=float("nan"), **kw):
    return ExpressionScore("v", "0", subset, J=j, F=f, R=r, **kw)


def test_revos_rounds_per_expression_and_averages_the_two_subsets():
    scores = [
        s("referring", 0.123456, 0.5, r=0.9),
        s("referring", 0.2, 0.3, r=1.0),
        s("reasoning", 0.5, 0.7, r=0.8),
        s("null", 0.0, 0.0, r=0.0),  # excluded from overall
    ]
    out = summarize(scores, "revos")
    ref = out["subsets"]["referring"]
    assert ref["J"] == pytest.approx((12.35 + 20.0) / 2)  # 12.3456 -> 12.35 first
    assert ref["JF"] == pytest.approx((ref["J"] + ref["F"]) / 2)
    assert ref["count"] == 2
    reas = out["subsets"]["reasoning"]
    overall = out["overall"]
    for m in ("J", "F", "JF", "R"):
        assert overall[m] == pytest.approx((ref[m] + reas[m]) / 2)  # unweighted, not 2:1
    assert overall["count"] == 3 and out["subsets"]["null"]["count"] == 1
    assert "null (excl.)" in format_table(out)


def test_plain_mean_for_mevis_and_reasonvos():
    scores = [s("all", 0.2, 0.4), s("all", 0.6, 0.8), s("all", 1.0, 0.0)]
    for dataset in ("mevis", "reasonvos"):
        out = summarize(scores, dataset)
        assert out["overall"]["J"] == pytest.approx(60.0)
        assert out["overall"]["F"] == pytest.approx(40.0)
        assert out["overall"]["JF"] == pytest.approx(50.0)
        assert math.isnan(out["overall"]["R"])
    assert "CodaLab" in summarize(scores, "ref_youtube_vos")["note"]


def test_long_rvos_overall_is_over_all_expressions():
    scores = [
        s("static", 0.2, 0.2, tIoU=1.0, vIoU=0.2),
        s("static", 0.4, 0.4, tIoU=0.5, vIoU=0.1),
        s("dynamic", 1.0, 1.0, tIoU=1.0, vIoU=1.0),
    ]
    out = summarize(scores, "long_rvos")
    assert list(out["subsets"]) == ["static", "dynamic"]
    assert out["overall"]["J"] == pytest.approx(100 * (0.2 + 0.4 + 1.0) / 3)  # not (30+100)/2
    assert out["overall"]["tIoU"] == pytest.approx(100 * 2.5 / 3)


def test_ref_davis17_mean_over_annotators():
    scores = [s("annotator_0", 0.5, 0.5), s("annotator_0", 1.0, 1.0), s("annotator_1", 0.0, 0.2)]
    out = summarize(scores, "ref_davis17")
    assert out["subsets"]["annotator_0"]["JF"] == pytest.approx(75.0)
    assert out["overall"]["JF"] == pytest.approx((75.0 + 10.0) / 2)
