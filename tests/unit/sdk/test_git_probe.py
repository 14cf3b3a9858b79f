"""``git_info`` asks git again only when its answer could have changed (producers/sdk/environment.py).

Every check runs real git in a real repository: after each kind of change the reused answer must equal
what a fresh ``git status`` says, and an unchanged repository must not cost a ``git status``.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from modelog.sdk import environment


def _git(repo, *args) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a", *args], check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    _git(tmp_path, "init", "-q", "-b", "main")
    for name in ("train.py", "conf/a.yaml", "conf/b.yaml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"{name}\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    calls: list[str] = []
    status = environment._git_status

    def counted(cwd):
        calls.append(cwd)
        return status(cwd)

    monkeypatch.setattr(environment, "_git_status", counted)
    # every change below is made a moment before the next call: judge "racy" by the clock to the nanosecond
    # (the margin's own rule is checked separately)
    monkeypatch.setattr(environment, "REUSE_MARGIN_S", 0.0)
    return tmp_path, calls, lambda: status(str(tmp_path))


def _age(repo) -> None:
    """Age the working files by a minute: git rewrites its index on every status while a file is as new as
    the index ("racy git")."""
    for path in repo.rglob("*"):
        if ".git" not in path.parts and path.is_file():
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 60 * 10**9))


def _settled(repo, calls) -> dict:
    """Age the working files, then call until an answer is reused (git refreshes its index once)."""
    _age(repo)
    for _ in range(4):
        before = len(calls)
        info = environment.git_info(str(repo))
        if len(calls) == before:
            return info
    raise AssertionError(f"git_info never reused its answer ({len(calls)} git status calls)")


def test_an_unchanged_repository_is_not_asked_again_and_every_change_is_seen(repo):
    repo, calls, fresh = repo
    first = _settled(repo, calls)
    assert first["git_branch"] == "main" and first["git_dirty"] is False and len(first["git_commit"]) == 40
    before = len(calls)
    for _ in range(5):
        assert environment.git_info(str(repo)) == first
    assert len(calls) == before

    train = repo / "train.py"
    st = os.stat(train)

    def changes():
        os.chmod(train, st.st_mode)  # nothing but the inode change time moves
        yield "attributes touched", False
        train.write_text(train.read_text().upper())  # same size, an old mtime (but not the one it had)
        os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns - 5 * 10**9))
        yield "edited in place", True
        _git(repo, "add", "train.py")
        yield "staged", True
        _git(repo, "commit", "-qm", "second")
        yield "committed", False
        _git(repo, "checkout", "-q", "-b", "feature")
        yield "new branch", False
        _git(repo, "update-ref", "refs/heads/feature", "HEAD~1")  # only the branch's ref file moves
        yield "branch moved", True
        _git(repo, "reset", "-q", "--hard")
        yield "reset", False
        (repo / "conf" / "b.yaml").unlink()
        yield "deleted", True
        _git(repo, "checkout", "-q", "--", "conf/b.yaml")
        _git(repo, "checkout", "-q", "--detach")
        yield "detached", False
        _git(repo, "config", "core.fileMode", "false")
        yield "config", False

    for what, dirty in changes():
        n = len(calls)
        got = environment.git_info(str(repo))
        assert len(calls) == n + 1, f"{what}: not asked again"
        assert got == fresh(), what
        assert got["git_dirty"] is dirty, what
        _settled(repo, calls)
    assert got["git_branch"] == "HEAD"


def test_a_change_within_the_margin_is_asked_again(repo, monkeypatch):
    repo, calls, _ = repo
    _settled(repo, calls)
    monkeypatch.setattr(environment, "REUSE_MARGIN_S", 3600.0)  # every file changed within the last hour
    n = len(calls)
    environment.git_info(str(repo))
    environment.git_info(str(repo))
    assert len(calls) == n + 2


def test_a_repository_with_a_submodule_is_asked_every_time(repo):
    repo, calls, _ = repo
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    _git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},vendored")
    _git(repo, "commit", "-qm", "a submodule")
    _age(repo)
    environment.git_info(str(repo))  # git refreshes its index
    n = len(calls)
    for _ in range(3):
        assert environment.git_info(str(repo))["git_dirty"] is not None
    assert len(calls) == n + 3


def test_a_repository_with_more_files_than_the_check_is_worth_is_asked_every_time(repo, monkeypatch):
    repo, calls, fresh = repo
    monkeypatch.setattr(environment, "MAX_TRACKED", 2)  # the fixture's repository tracks three
    _age(repo)
    environment.git_info(str(repo))  # git refreshes its index
    n = len(calls)
    for _ in range(3):
        assert environment.git_info(str(repo)) == fresh()
    assert len(calls) == n + 3
