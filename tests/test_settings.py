"""Settings and policies: the example file documents every field; bad values stop start-up with a clear message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from proxy.errors import ConfigError
from proxy.policies import Policy, builtin_policy, load_policies
from proxy.settings import EmbeddingSettings, Settings, StoreSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_config_example_documents_every_setting_with_its_default():
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert load_settings(ROOT / "config.example.yaml") == Settings()
    assert set(example) == {f.name for f in dataclasses.fields(Settings)}
    assert set(example["embedding"]) == {f.name for f in dataclasses.fields(EmbeddingSettings)}
    assert set(example["store"]) == {f.name for f in dataclasses.fields(StoreSettings)}


def test_flags_override_the_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("port: 9000\nupstream: http://a/v1\n")
    settings = load_settings(config, port=9100, upstream=None)
    assert settings.port == 9100 and settings.upstream == "http://a/v1"


@pytest.mark.parametrize(("text", "message"), [
    ("prot: 1\n", "unknown key 'prot'"),
    ("port: eighty\n", "port: expected int"),
    ("log_level: loud\n", "log_level: expected one of"),
    ("embedding:\n  modle: x\n", "unknown key 'embedding.modle'"),
    ("embedding: 3\n", "embedding: expected a mapping"),
    ("- a\n", "expected a mapping at the top level"),
])
def test_bad_settings_name_the_file_and_key(tmp_path, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(config) in str(caught.value) and message in str(caught.value)


def test_repo_default_policy_equals_the_builtin_one():
    repo = load_policies(ROOT / "policies").policy_for("some-unmatched-model")
    assert dataclasses.replace(repo, name="x") == dataclasses.replace(builtin_policy(), name="x")


def test_most_specific_policy_wins(tmp_path):
    (tmp_path / "default.yaml").write_text("match: '*'\n")
    (tmp_path / "gpt4o.yaml").write_text("match: 'gpt-4o*'\nmode: exact\n")
    (tmp_path / "mini.yaml").write_text("match: 'gpt-4o-mini*'\nmode: 'off'\n")
    policies = load_policies(tmp_path)
    assert policies.policy_for("gpt-4o-mini-2024").mode == "off"
    assert policies.policy_for("gpt-4o").mode == "exact"
    assert policies.policy_for("claude").name == "default"


def test_a_folder_without_a_catch_all_gets_the_builtin_one(tmp_path):
    (tmp_path / "o1.yaml").write_text("match: 'o1*'\nmode: exact\n")
    assert load_policies(tmp_path).policy_for("anything").name == "default"


@pytest.mark.parametrize(("text", "message"), [
    ("match: '*'\nmoed: exact\n", "unknown key 'moed'"),
    ("match: '*'\nmode: fuzzy\n", "mode: expected one of"),
    ("match: '*'\nthreshold: 1.5\n", "threshold: expected a cosine similarity"),
    ("match: '*'\nttl: -1\n", "ttl: expected a number >= 0"),
    ("match: '*'\nsecond_opinion_tie: -0.1\n", "second_opinion_tie: expected a number >= 0"),
    ("match: '*'\nshare_across_keys: maybe\n", "share_across_keys: expected true or false"),
    ("match: [\n", "not valid YAML"),
])
def test_bad_policy_names_file_and_key(tmp_path, text, message):
    (tmp_path / "broken.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_policies(tmp_path)
    assert "broken.yaml" in str(caught.value) and message in str(caught.value)


def test_long_questions_use_the_long_threshold():
    policy = Policy(threshold=0.9, long_threshold=0.95, long_after=10)
    assert policy.threshold_for("short") == 0.9 and policy.threshold_for("a much longer question") == 0.95
