"""Plaintext outputs (keys export -o, decrypt -o / > file, subjects export -o) are refused inside a git
working tree unless the path is git-ignored or --force is given; the repository ignores the README's paths."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_runs import REPO, repo_env


def _git_repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def _pstream(cwd: Path, *args: str, stdout=None):
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, env=repo_env(), text=True, timeout=120,
                          stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE)


def test_keys_export_refuses_a_path_git_would_commit(subjects_run, tmp_path):
    repo = _git_repo(tmp_path / "repo")
    keys, kek = str(subjects_run / "out" / "keys"), f"local://{subjects_run / 'out' / 'kek.json'}"
    refused = _pstream(repo, "keys", "export", keys, "--kek", kek, "-o", "keys.csv")
    assert refused.returncode == 2
    assert "refusing to write plaintext keys to keys.csv" in refused.stderr
    assert "not git-ignored" in refused.stderr and "--force" in refused.stderr and str(repo) in refused.stderr
    assert not (repo / "keys.csv").exists()
    (repo / ".gitignore").write_text("keys.csv\n")
    assert _pstream(repo, "keys", "export", keys, "--kek", kek, "-o", "keys.csv").returncode == 0
    assert (repo / "keys.csv").stat().st_size > 0
    forced = _pstream(repo, "keys", "export", keys, "--kek", kek, "-o", "other.csv", "--force")
    assert forced.returncode == 0 and (repo / "other.csv").exists()
    outside = _pstream(tmp_path, "keys", "export", keys, "--kek", kek, "-o", "keys.csv")   # no working tree
    assert outside.returncode == 0


def test_decrypt_and_access_report_are_checked_too(subjects_run, tmp_path):
    repo = _git_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text("/secret/\n")
    keys, kek = str(subjects_run / "out" / "keys"), f"local://{subjects_run / 'out' / 'kek.json'}"
    assert _pstream(repo, "keys", "export", keys, "--kek", kek, "-o", "secret/keys.csv").returncode == 0
    encrypted = str(subjects_run / "out" / "encrypted")
    refused = _pstream(repo, "decrypt", encrypted, "--keys", "secret/keys.csv", "-o", "decrypted.jsonl")
    assert refused.returncode == 2 and "refusing to write decrypted events" in refused.stderr
    assert not (repo / "decrypted.jsonl").exists()
    with open(repo / "redirected.jsonl", "w") as handle:       # `> redirected.jsonl` in the shell
        redirected = _pstream(repo, "decrypt", encrypted, "--keys", "secret/keys.csv", stdout=handle)
    assert redirected.returncode == 2 and "standard output" in redirected.stderr
    assert (repo / "redirected.jsonl").stat().st_size == 0
    ok = _pstream(repo, "decrypt", encrypted, "--keys", "secret/keys.csv", "-o", "secret/decrypted.jsonl")
    assert ok.returncode == 0 and (repo / "secret" / "decrypted.jsonl").stat().st_size > 0
    piped = _pstream(repo, "decrypt", encrypted, "--keys", "secret/keys.csv")   # a pipe: nothing to commit
    assert piped.returncode == 0 and piped.stdout
    report = _pstream(repo, "subjects", "export", "123456", "--output", str(subjects_run / "out"), "-o", "access.json")
    assert report.returncode == 2 and "refusing to write an access report" in report.stderr


def test_a_tracked_file_is_not_treated_as_ignored(subjects_run, tmp_path):
    repo = _git_repo(tmp_path / "repo")
    (repo / "keys.csv").write_text("old\n")
    subprocess.run(["git", "-C", str(repo), "add", "keys.csv"], check=True)
    (repo / ".gitignore").write_text("keys.csv\n")             # ignored, but tracked: a change would be committed
    refused = _pstream(repo, "keys", "export", str(subjects_run / "out" / "keys"),
                       "--kek", f"local://{subjects_run / 'out' / 'kek.json'}", "-o", "keys.csv")
    assert refused.returncode == 2 and (repo / "keys.csv").read_text() == "old\n"


@pytest.mark.parametrize("path", ["keys.csv", "keys.jsonl", "decrypted.jsonl", "out/keys/x.jsonl", "out2/a",
                                  "out_k5/a", "example_input.csv", "shop.csv", "exports/a.jsonl",
                                  "access-report.json"])
def test_the_repository_ignores_the_readme_paths(path):
    if subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True).returncode != 0:
        pytest.skip("the checkout is not a git working tree: .gitignore cannot be asked")
    proc = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "--no-index", path])
    assert proc.returncode == 0, f"{path} is not in .gitignore"


def test_a_symbolic_link_into_a_working_tree_is_refused_where_it_leads(tmp_path):
    from cli.plaintext_paths import refuse_plaintext_path

    repo = _git_repo(tmp_path / "repo")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keys.csv").symlink_to(repo / "keys.csv")            # a link outside, the file inside
    (outside / "dir").symlink_to(repo)
    for path in (outside / "keys.csv", outside / "dir" / "new.csv"):
        problem = refuse_plaintext_path(str(path), "plaintext keys", False)
        assert problem and f"which leads to {repo}" in problem and "not git-ignored" in problem, problem
    (repo / ".gitignore").write_text("*.csv\n")
    assert refuse_plaintext_path(str(outside / "keys.csv"), "plaintext keys", False) is None
    (repo / "out.csv").symlink_to(outside / "real.csv")             # a link inside, the file outside: fine
    (repo / ".gitignore").write_text("")
    assert refuse_plaintext_path(str(repo / "out.csv"), "plaintext keys", False) is None


def test_a_git_dir_in_the_environment_does_not_answer_for_the_tree(tmp_path, monkeypatch):
    from cli.plaintext_paths import refuse_plaintext_path

    repo = _git_repo(tmp_path / "repo")
    other = _git_repo(tmp_path / "other")
    (other / ".git" / "info").mkdir(exist_ok=True)
    (other / ".git" / "info" / "exclude").write_text("*.csv\n")     # the other repository ignores it
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    problem = refuse_plaintext_path(str(repo / "keys.csv"), "plaintext keys", False)
    assert problem and f"working tree {repo} " in problem
    (tmp_path / "plain").mkdir()
    assert refuse_plaintext_path(str(tmp_path / "plain" / "keys.csv"), "plaintext keys", False) is None


def test_a_directory_as_the_output_is_a_clear_refusal_not_a_traceback(subjects_run, tmp_path):
    keys, kek = str(subjects_run / "out" / "keys"), f"local://{subjects_run / 'out' / 'kek.json'}"
    for command in (("keys", "export", keys, "--kek", kek, "-o", str(tmp_path)),
                    ("keys", "export", keys, "--kek", kek, "-o", str(tmp_path), "--force"),
                    ("subjects", "export", "123456", "--output", str(subjects_run / "out"), "-o", str(tmp_path))):
        proc = _pstream(tmp_path, *command)
        assert proc.returncode == 2 and f"{tmp_path} is a directory" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_dev_stdout_redirected_into_a_working_tree_is_refused(subjects_run, tmp_path):
    repo = _git_repo(tmp_path / "repo")
    keys, kek = str(subjects_run / "out" / "keys"), f"local://{subjects_run / 'out' / 'kek.json'}"
    with open(repo / "keys.csv", "w") as handle:                   # `-o /dev/stdout > keys.csv`
        proc = _pstream(repo, "keys", "export", keys, "--kek", kek, "-o", "/dev/stdout", stdout=handle)
    assert proc.returncode == 2 and f"which leads to {repo / 'keys.csv'}" in proc.stderr, proc.stderr
    assert (repo / "keys.csv").stat().st_size == 0
