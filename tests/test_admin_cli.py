"""`deja stats|entries|delete|purge|export` against a live proxy (--url) and a stopped one's data directory."""

from __future__ import annotations

import json

import pytest

from proxy.cli import main

from .conftest import LiveProxy
from .test_serve import wait_for

TOKEN = "cli-admin-token"


@pytest.fixture
def live(tmp_path, upstream, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    with LiveProxy(tmp_path / "data", upstream) as proxy:
        for text in ("How do I reset my password?", "What is the capital of France?", "Tell me a joke"):
            assert proxy.chat(text).status_code == 200
        proxy.wait_until_stored(TOKEN, 3)
        assert proxy.chat("Tell me a joke").headers["x-cache-status"] == "HIT"
        yield proxy


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_stats_entries_export_delete_purge_against_a_running_proxy(live, capsys, tmp_path):
    code, out, _ = run(capsys, "stats", "--url", live.base)
    stats = json.loads(out)
    assert code == 0 and stats["entries"] == 3 and stats["requests"]["HIT"] == 1

    code, out, err = run(capsys, "entries", "--url", live.base, "--search", "capital", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["question"] for r in rows] == ["What is the capital of France?"]

    target = tmp_path / "export.jsonl"
    code, _, err = run(capsys, "export", "--url", live.base, "-o", str(target))
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert code == 0 and len(lines) == 3 and "3/3" in err  # the progress bar's last state

    code, out, _ = run(capsys, "delete", "--url", live.base, str(rows[0]["id"]), "999999")
    assert code == 1 and "deleted 1 of 2" in out
    assert live.chat("What is the capital of France?").headers["x-cache-status"] == "MISS"

    code, out, _ = run(capsys, "purge", "--url", live.base, "--model", "gpt-4o-mini")
    assert code == 0 and out.strip() == "purged 3 entries"  # 2 left + the re-asked question


def test_cli_refuses_without_a_token_or_with_a_wrong_one(live, capsys, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", "wrong")
    code, _, err = run(capsys, "stats", "--url", live.base)
    assert code == 1 and "401" in err and "wrong" not in err
    monkeypatch.delenv("DEJA_ADMIN_TOKEN")
    code, _, err = run(capsys, "stats", "--url", live.base)
    assert code == 1 and "DEJA_ADMIN_TOKEN must be set" in err


def test_cli_on_a_stopped_proxys_data_directory_and_the_index_follows(tmp_path, upstream, capsys, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    data = tmp_path / "data"
    with LiveProxy(data, upstream) as proxy:
        proxy.chat("what is the capital of france")
        proxy.chat("How do I reset my password?")
        proxy.wait_until_stored(TOKEN, 2)
        assert proxy.chat("What is the capital of France?").headers["x-cache-status"] == "HIT"
    code, out, _ = run(capsys, "stats", "--data-dir", str(data))
    assert code == 0 and json.loads(out)["entries"] == 2
    code, out, _ = run(capsys, "export", "--data-dir", str(data), "--search", "password")
    assert [json.loads(line)["question"] for line in out.splitlines()] == ["How do I reset my password?"]
    code, _, err = run(capsys, "purge", "--data-dir", str(data))
    assert code == 1 and "--all" in err
    code, out, _ = run(capsys, "purge", "--data-dir", str(data), "--model", "gpt-4o-mini")
    assert out.strip() == "purged 2 entries"
    with LiveProxy(data, upstream) as proxy:  # the saved index disagrees with the store: rebuilt, empty
        reworded = proxy.chat("What is the capital of France?")
        assert reworded.headers["x-cache-status"] == "MISS"


def test_cli_data_dir_must_exist(tmp_path, capsys):
    code, _, err = run(capsys, "stats", "--data-dir", str(tmp_path / "nothing"))
    assert code == 1 and "does not exist" in err


def test_cli_import_through_a_running_proxy_restores_an_export(live, capsys, tmp_path):
    target = tmp_path / "export.jsonl"
    assert run(capsys, "export", "--url", live.base, "-o", str(target))[0] == 0
    assert run(capsys, "purge", "--url", live.base, "--all")[0] == 0
    assert json.loads(run(capsys, "stats", "--url", live.base)[1])["entries"] == 0
    code, _, err = run(capsys, "import", str(target), "--url", live.base)
    assert code == 0 and "3 imported, 0 skipped, 0 failed of 3 lines" in err
    assert live.chat("Tell me a joke").headers["x-cache-status"] == "HIT"


def test_cli_straight_on_the_postgresql_store_while_a_replica_serves(tmp_path, upstream, capsys, monkeypatch,
                                                                    postgres_database):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    config = tmp_path / "config.yaml"
    config.write_text(f"store:\n  url: {postgres_database}\n")
    with LiveProxy(tmp_path / "data", upstream, store_url=postgres_database) as proxy:
        proxy.chat("what is the capital of france")
        proxy.chat("How do I reset my password?")
        proxy.wait_until_stored(TOKEN, 2)
        assert proxy.chat("How do I reset my password?").headers["x-cache-status"] == "HIT"
        def stats() -> dict:
            code, out, _ = run(capsys, "stats", "--store", postgres_database)
            assert code == 0
            return json.loads(out)

        assert wait_for(lambda: stats()["entry_hits"] == 1)  # hit counts are written at most once a second
        assert stats()["entries"] == 2 and [m["model"] for m in stats()["models"]] == ["gpt-4o-mini"]
        code, out, _ = run(capsys, "stats", "--config", str(config))  # the store named by the settings file
        assert code == 0 and json.loads(out)["entries"] == 2
        code, out, _ = run(capsys, "export", "--store", postgres_database, "--search", "password")
        assert [json.loads(line)["question"] for line in out.splitlines()] == ["How do I reset my password?"]
        code, out, _ = run(capsys, "purge", "--store", postgres_database, "--model", "gpt-4o-mini")
        assert out.strip() == "purged 2 entries"
        # The replica was told: it no longer serves the deleted answer from its hot records.
        assert proxy.chat("How do I reset my password?").headers["x-cache-status"] == "MISS"
    code, out, _ = run(capsys, "entries", "--store", postgres_database, "--json")  # its answer, stored again
    assert code == 0 and [json.loads(line)["question"] for line in out.splitlines()] == [
        "How do I reset my password?"]


def test_cli_says_why_a_postgresql_store_cannot_be_read(capsys, postgres_url):
    empty = postgres_url.replace("/postgres?", "/template1?")
    code, _, err = run(capsys, "stats", "--store", empty)
    assert code == 1 and "holds no Deja store" in err
    code, _, err = run(capsys, "stats", "--store", "postgresql://nobody@127.0.0.1:1/deja")
    assert code == 1 and "cannot reach the PostgreSQL store" in err
    code, _, err = run(capsys, "stats", "--store", "postgresql://x@127.0.0.1:1/deja", "--url", "http://127.0.0.1:1")
    assert code == 1 and "exclude each other" in err
