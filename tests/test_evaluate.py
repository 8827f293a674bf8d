"""`deja eval`: reading labelled pairs, scoring them through SemanticCache, and the command itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from proxy import evaluate as ev
from proxy.policies import Policy

from .fakes import HashEmbedder

POLICY = Policy(threshold=0.9, long_threshold=0.95)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_custom_fields_json_lists_and_missing_labels(tmp_path):
    path = tmp_path / "mock.json"
    path.write_text(json.dumps([{"origin": "x", "similar": "y"}, {"origin": "p", "similar": "q"}]))
    pairs = ev.read_pairs(path, ev.Fields(a="origin", b="similar"))
    assert [(p.a, p.b, p.same) for p in pairs] == [("x", "y", True), ("p", "q", True)]
    with pytest.raises(ValueError, match="row 1 has no 'a'"):
        ev.read_pairs(path, ev.Fields())


def test_gzip_and_gzipped_tar_files_are_read(tmp_path):
    import gzip
    import io
    import tarfile

    rows = [{"text_a": "x", "text_b": "y", "label": 0}, {"text_a": "p", "text_b": "q", "label": 1}]
    data = json.dumps(rows).encode()
    (tmp_path / "plain.json.gz").write_bytes(gzip.compress(data))
    with tarfile.open(tmp_path / "tar.json.gz", "w:gz") as archive:
        info = tarfile.TarInfo("inner/rows.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    fields = ev.Fields(a="text_a", b="text_b", label="label")
    for name in ("plain.json.gz", "tar.json.gz"):
        assert [(p.a, p.same) for p in ev.read_pairs(tmp_path / name, fields)] == [("x", False), ("p", True)]


def test_halves_are_stable_disjoint_and_complete(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": f"r{i}", "a": "a", "b": "b", "same_answer": True}
                                               for i in range(200)])
    tune = {p.id for p in ev.read_pairs(path, ev.Fields(), "tune")}
    hold = {p.id for p in ev.read_pairs(path, ev.Fields(), "holdout")}
    assert not tune & hold and len(tune | hold) == 200 and 60 < len(tune) < 140
    assert tune == {p.id for p in ev.read_pairs(path, ev.Fields(), "tune")}


@pytest.mark.anyio
async def test_pairs_are_scored_through_the_cache(tmp_path):
    history_a = [{"role": "user", "content": "my gym plan"}, {"role": "assistant", "content": "ok"},
                 {"role": "user", "content": "cancel it"}]
    history_b = [{"role": "user", "content": "my phone plan"}, {"role": "assistant", "content": "ok"},
                 {"role": "user", "content": "cancel it"}]
    pairs = [
        ev.Pair("1", "reset my password", "Reset my PASSWORD?", True, "paraphrase"),
        ev.Pair("2", "open on sunday", "closed on monday", False, "negation"),
        ev.Pair("3", history_a, history_b, False, "context_swap"),
        ev.Pair("4", history_a, history_a, True, "same"),
    ]
    outcomes = await ev.run_eval(pairs, HashEmbedder(), POLICY, floor=0.5, progress=False)
    assert [ev.served_at(o) for o in outcomes] == [True, False, False, True]
    total = ev.score(outcomes, POLICY)
    assert (total.served, total.should_hit, total.traps_served, total.traps) == (2, 2, 0, 2)
    assert ev.by_category(outcomes, POLICY)["negation"].traps == 1


@pytest.mark.anyio
async def test_corpus_mode_tells_right_from_wrong_answers():
    pairs = [ev.Pair("1", "alpha beta gamma", "gamma beta alpha", True, "x"),
             ev.Pair("2", "delta epsilon zeta", "delta epsilon zeta eta", True, "x"),
             ev.Pair("3", "eta theta iota", "alpha beta gamma", True, "x")]  # asks another pair's question
    outcomes = await ev.run_eval(pairs, HashEmbedder(), POLICY, mode="corpus", floor=0.5, progress=False)
    assert [(o.right, ev.served_at(o)) for o in outcomes] == [(True, True), (True, False),
                                                                         (False, True)]
    total = ev.score(outcomes, POLICY)
    assert (total.served, total.wrong_served) == (1, 1)


def test_sweep_is_monotonic():
    pair = ev.Pair("1", "a", "b", True, "c")
    outcomes = [ev.Outcome(pair, s) for s in (0.81, 0.9, 0.95, None)]
    rates = [s.served_rate for _, s in ev.sweep(outcomes, POLICY, ev.thresholds_between(0.8, 0.99, 0.01))]
    assert rates == sorted(rates, reverse=True) and rates[0] == 0.75 and rates[-1] == 0.0


def test_the_heading_names_files_that_share_a_name_by_their_folder():
    files = ["eval/conv-parts/billing.jsonl", "eval/conv-long/billing.jsonl", "eval/conv-long/retail.jsonl"]
    assert ev.files_title(files) == "conv-parts/billing.jsonl, conv-long/billing.jsonl, retail.jsonl"
    assert ev.files_title(["a/pairs.jsonl"]) == "pairs.jsonl"


@pytest.mark.model
def test_deja_eval_command_reports_json(tmp_path, model_dir):
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"q1": "What is the capital of France?", "q2": "What is the capital city of France?", "ok": True,
         "kind": "paraphrase"},
        {"q1": "How do I bake bread?", "q2": "What is the boiling point of water?", "ok": False, "kind": "trap"},
    ])
    (tmp_path / "c.yaml").write_text(f"embedding:\n  cache_dir: {model_dir}\n")
    out = subprocess.run([sys.executable, "-m", "proxy", "eval", str(path), "--a-field", "q1", "--b-field", "q2",
                          "--label-field", "ok", "--category-field", "kind", "--json", "--config",
                          str(tmp_path / "c.yaml"), "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout)
    assert report["total"]["served"] == 1 and report["total"]["traps_served"] == 0
    assert set(report["categories"]) == {"paraphrase", "trap"}
    assert report["pairs"][0]["similarity"] >= 0.96


@pytest.mark.model
def test_a_sweep_above_the_policy_threshold_still_scores_the_policy(tmp_path, model_dir):
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"a": "What is the capital of France?", "b": "What is the capital city of France?", "same_answer": True}])
    (tmp_path / "c.yaml").write_text(f"embedding:\n  cache_dir: {model_dir}\n")
    out = subprocess.run([sys.executable, "-m", "proxy", "eval", str(path), "--json", "--threshold", "0.5",
                          "--sweep", "0.98:0.99:0.01", "--config", str(tmp_path / "c.yaml"), "--data-dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout)
    assert report["total"]["served"] == 1  # cosine ~0.96: under the sweep, over the policy's 0.5
    assert report["sweep"][0]["served"] == 0


@pytest.mark.anyio
async def test_explain_lists_each_wrong_decision_with_its_similarity_and_rule():
    pairs = [
        ev.Pair("p1", "reset my password", "Reset my PASSWORD?", True, "paraphrase"),  # served: not listed
        ev.Pair("p2", "is the pool open on sunday", "is the pool not open on sunday", True, "paraphrase"),
        ev.Pair("t1", "did the dog bite the man", "did the man bite the dog", False, "swap"),  # same words
        ev.Pair("p3", "bake bread", "boiling point of water", True, "paraphrase"),
    ]
    outcomes = await ev.run_eval(pairs, HashEmbedder(), POLICY, floor=0.5, progress=False)
    decisions = {o.pair.id: kind for kind, o in ev.wrong_decisions(outcomes, POLICY)}
    assert decisions == {"p2": "missed", "t1": "served trap", "p3": "missed"}
    rows = {line.split(" | ")[1]: line for line in ev.explain_lines(outcomes, POLICY) if line.startswith("| ")}
    assert "guard: negation" in rows["p2"]
    assert "no rule fired (threshold 0.9)" in rows["t1"]
    assert "below every threshold" in rows["p3"] and float(rows["p3"].split(" | ")[3]) < 0.5
    similarity = float(rows["p2"].split(" | ")[3])
    assert 0.5 <= similarity < 1.0


@pytest.mark.anyio
async def test_pairs_sharing_a_stored_question_each_count_as_served():
    pairs = [ev.Pair("1", "reset my password", "Reset my password?", True, "x"),
             ev.Pair("2", "reset my password", "reset my PASSWORD", True, "x")]
    outcomes = await ev.run_eval(pairs, HashEmbedder(), POLICY, floor=0.5, progress=False)
    assert [o.right for o in outcomes] == [True, True]
    assert ev.score(outcomes, POLICY).served == 2


def test_report_names_time_sensitive_questions():
    from proxy.evaluate import Outcome, Pair, report_json, report_lines, volatile_reason

    assert volatile_reason([{"role": "user", "content": "Who won last night's game?"}]) == "relative_day"
    outcomes = [Outcome(Pair("0", "Weather in Oslo?", "What's the weather in Oslo today?", True, "all"), 0.9),
                Outcome(Pair("1", "Capital of Peru?", "What is the capital of Peru?", True, "all"), 0.9)]
    policy = Policy(volatile_ttl=600)
    text = "\n".join(report_lines("x", outcomes, policy, [0.9], "pairs"))
    assert "Time-sensitive questions asked (stored for volatile_ttl 600 s): 1/2 — relative_day 1" in text
    assert [p["volatile"] for p in report_json(outcomes, policy, [0.9])["pairs"]] == ["relative_day", None]
