"""``authtoken scan``: token strings found in a real folder tree, in standard input and
in a real git history, by key only; ``--check`` and ``--revoke`` against a real store."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import SECRET_KEY, Cli

from authtoken import AuthToken, find_tokens, open_security
from authtoken._cli import _scan
from authtoken.testing import FakeClock

AUTHTOKEN = Path(sys.executable).with_name("authtoken")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command line over a fresh SQLite file, keys from AUTHTOKEN_SECRET_KEYS."""
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    return Cli(monkeypatch, capsys, f"sqlite:///{tmp_path}/t.db")


def make_token(cli: Cli, *, clock: FakeClock | None = None, expires: str = "30d") -> str:
    """A token string made by a real Security on the command line's database."""
    with open_security(cli.url, secret_keys=SECRET_KEY, clock=clock) as security:
        return security.authorize_token(AuthToken("reports:read", expires=expires), user=7)


def key_of(token: str) -> str:
    return token[4:20]


def no_secret(text: str, *tokens: str) -> None:
    for token in tokens:
        assert token not in text
        for part in token.split(".")[1:3]:
            assert part not in text


@pytest.fixture
def tree(tmp_path: Path, cli: Cli) -> tuple[Path, dict[str, str]]:
    """A folder with tokens planted in text, JSON, .env, binary, nested and .git files."""
    root = tmp_path / "repo"
    (root / "deep" / "er").mkdir(parents=True)
    (root / ".git" / "objects").mkdir(parents=True)
    t = {name: make_token(cli) for name in ("text", "json", "env", "nested", "binary", "git")}
    (root / "notes.txt").write_text(f"hello\n\nthe token: {t['text']} (oops)\nbye\n")
    (root / "config.json").write_text(json.dumps({"a": 1, "token": t["json"]}, indent=2))
    (root / ".env").write_text(f"# settings\nAPI=1\nAUTHTOKEN_TOKEN={t['env']}\n")
    (root / "deep" / "er" / "job.py").write_text(f"\n\n\n\nTOKEN = '{t['nested']}'\n")
    (root / "image.bin").write_bytes(b"\x89PNG\0\0" + t["binary"].encode() + b"\n")
    (root / ".git" / "objects" / "leak").write_text(t["git"] + "\n")
    (root / "clean.txt").write_text("atk_ nothing to see\n" * 50)
    return root, t


def test_scan_of_a_folder_prints_path_line_key(cli: Cli, tree: tuple[Path, dict[str, str]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Each token in a text, JSON, .env and nested file is one ``PATH:LINE: KEY``; binary
    files and ``.git`` are skipped; exit 1; no secret anywhere."""
    root, t = tree
    monkeypatch.chdir(root)
    result = cli.raw("scan")
    assert result.code == 1, result.err
    assert result.out.splitlines() == sorted([
        f"./.env:3: {key_of(t['env'])}",
        f"./config.json:3: {key_of(t['json'])}",
        f"./notes.txt:3: {key_of(t['text'])}",
        f"./deep/er/job.py:5: {key_of(t['nested'])}",
    ], key=lambda line: (line.count("/"), line))
    assert "skipped 1 binary file" in result.err
    no_secret(result.text, *t.values())


def test_scan_of_named_files_and_a_clean_folder(cli: Cli,
                                                tree: tuple[Path, dict[str, str]]) -> None:
    """Named files are scanned as given; a folder without tokens exits 0, printing
    nothing."""
    root, t = tree
    result = cli.raw("scan", str(root / "notes.txt"), str(root / "clean.txt"))
    assert result.code == 1
    assert result.out == f"{root}/notes.txt:3: {key_of(t['text'])}\n"
    (root / "empty").mkdir()
    (root / "empty" / "readme").write_text("no token here\n")
    clean = cli.raw("scan", str(root / "empty"), str(root / "clean.txt"))
    assert (clean.code, clean.out, clean.err) == (0, "", "")


def test_a_token_in_a_binary_file_is_skipped_but_said(cli: Cli,
                                                     tree: tuple[Path, dict[str, str]]) -> None:
    """A file with a NUL byte in its first block is skipped, with a note."""
    root, t = tree
    result = cli.raw("scan", str(root / "image.bin"))
    assert result.code == 0 and result.out == ""
    assert "skipped 1 binary file" in result.err
    no_secret(result.text, t["binary"])


def test_scan_reads_standard_input(cli: Cli) -> None:
    """``-`` is standard input; lines are counted from 1."""
    token = make_token(cli)
    result = cli.raw("scan", "-", stdin=io.StringIO(f"a\nb\nx{token}y and {token}\n"))
    assert result.code == 1
    assert result.out.splitlines() == [f"-:3: {key_of(token)}"] * 2
    no_secret(result.text, token)


def test_scan_needs_no_database_and_no_key(tmp_path: Path, cli: Cli,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --check the scan opens nothing: an unreadable policy, no key and a
    database URL under a missing folder change nothing, and nothing is created."""
    token = make_token(cli)
    (tmp_path / "f.txt").write_text(token)
    monkeypatch.delenv("AUTHTOKEN_SECRET_KEYS")
    monkeypatch.setenv("AUTHTOKEN_MAX_LIFETIME", "soon")
    home = Path(os.environ["HOME"])
    before = sorted(home.rglob("*"))
    result = cli.raw("--database", f"sqlite:///{tmp_path}/nowhere/x.db", "scan",
                     str(tmp_path / "f.txt"))
    assert result.code == 1 and result.err == ""
    assert result.out == f"{tmp_path}/f.txt:1: {key_of(token)}\n"
    assert not (tmp_path / "nowhere").exists()
    assert sorted(home.rglob("*")) == before
    refused = cli.raw("--database", f"sqlite:///{tmp_path}/nowhere/x.db", "scan", "--check",
                      str(tmp_path / "f.txt"))
    assert refused.code == 1 and "AUTHTOKEN_MAX_LIFETIME" in refused.err


def test_check_says_live_revoked_expired_unknown(tmp_path: Path, cli: Cli) -> None:
    """--check adds what the store knows of each key, once looked up per key."""
    live = make_token(cli)
    revoked = make_token(cli)
    cli("revoke", key_of(revoked))
    past = FakeClock(datetime.now(timezone.utc) - timedelta(days=3))
    expired = make_token(cli, clock=past, expires="1d")
    with open_security("memory://", secret_keys="another-installation-key-0123456789") as s:
        unknown = s.authorize_token(AuthToken("x"), user=1)
    (tmp_path / "leak.log").write_text("\n".join([live, revoked, expired, unknown, live]))
    result = cli("scan", "--check", str(tmp_path / "leak.log"))
    assert result.code == 1, result.err
    path = f"{tmp_path}/leak.log"
    assert result.out.splitlines() == [
        f"{path}:1: {key_of(live)} live",
        f"{path}:2: {key_of(revoked)} revoked",
        f"{path}:3: {key_of(expired)} expired",
        f"{path}:4: {key_of(unknown)} unknown",
        f"{path}:5: {key_of(live)} live",
    ]
    assert cli.view(key_of(live))["revoked_at"] is None
    no_secret(result.text, live, revoked, expired, unknown)


def test_revoke_revokes_the_live_ones_and_says_so(tmp_path: Path, cli: Cli) -> None:
    """--revoke revokes each live token found, once, and the store agrees."""
    live = make_token(cli)
    expired = make_token(cli, clock=FakeClock(datetime.now(timezone.utc) - timedelta(days=3)),
                         expires="1d")
    (tmp_path / "a.env").write_text(f"{live}\n{expired}\n{live}\n")
    result = cli("scan", "--revoke", str(tmp_path))
    assert result.code == 1, result.err
    path = f"{tmp_path}/a.env"
    assert result.out.splitlines() == [
        f"{path}:1: {key_of(live)} live; revoked {key_of(live)} now "
        "(and every token derived from it)",
        f"{path}:2: {key_of(expired)} expired",
        f"{path}:3: {key_of(live)} revoked",
    ]
    assert cli.view(key_of(live))["revoked_at"] is not None
    assert cli.view(key_of(expired))["revoked_at"] is None
    assert cli("login", stdin=live).code == 1


def test_a_string_made_up_around_a_real_key_is_unknown_and_never_revoked(
        tmp_path: Path, cli: Cli) -> None:
    """Keys are no secret and the checksum needs no key: anyone can write a string that
    passes the checksum around a real token's key.  --check and --revoke verify the
    string itself, so such a string is ``unknown`` and its token stays live."""
    from authtoken._codec import checksum

    real = make_token(cli)
    body = f"atk_{key_of(real)}.{'A' * 43}.{'B' * 43}"
    forged = body + "." + checksum(body.encode()).decode()
    assert [f.key for f in find_tokens(forged)] == [key_of(real)]
    (tmp_path / "leak.txt").write_text(f"{forged}\n")
    result = cli("scan", "--revoke", str(tmp_path / "leak.txt"))
    assert result.code == 1, result.err
    assert result.out.splitlines() == [f"{tmp_path}/leak.txt:1: {key_of(real)} unknown"]
    assert cli.view(key_of(real))["revoked_at"] is None
    assert cli("login", stdin=real).code == 0
    no_secret(result.text, real, forged)


def test_json_lists_the_findings(tmp_path: Path, cli: Cli) -> None:
    """--json prints ``{"found": [...]}`` with path, line, key and, with --check, status."""
    token = make_token(cli)
    (tmp_path / "x").write_text(f"\n{token}\n")
    result = cli("--json", "scan", "--check", str(tmp_path / "x"))
    assert result.code == 1
    assert result.json() == {"found": [
        {"path": f"{tmp_path}/x", "line": 2, "key": key_of(token), "status": "live"}]}
    assert cli("--json", "scan", str(tmp_path / "nothing-here")).code == 2


def test_a_missing_path_is_a_usage_error_before_anything_is_scanned(
        tmp_path: Path, cli: Cli) -> None:
    """A path that does not exist: a note naming it, exit 2, nothing printed."""
    token = make_token(cli)
    (tmp_path / "real").write_text(token)
    result = cli.raw("scan", str(tmp_path / "real"), str(tmp_path / "gone\x1b[2J"))
    assert result.code == 2
    assert result.out == ""
    assert "no such file or folder" in result.err and "gone\\x1b[2J" in result.err
    assert "\x1b" not in result.err
    assert cli.raw("scan", "-", "-", stdin=io.StringIO(token)).code == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_skipped_with_a_note(tmp_path: Path, cli: Cli) -> None:
    """An unreadable file is named on stderr; the rest is scanned."""
    token = make_token(cli)
    (tmp_path / "locked").write_text(token)
    (tmp_path / "locked").chmod(0)
    (tmp_path / "open").write_text(token)
    result = cli.raw("scan", str(tmp_path))
    assert result.code == 1
    assert result.out == f"{tmp_path}/open:1: {key_of(token)}\n"
    assert f"skipped {tmp_path}/locked: Permission denied" in result.err
    no_secret(result.text, token)


def test_a_fifo_in_a_folder_does_not_block(tmp_path: Path, cli: Cli) -> None:
    """A FIFO met in a walk is passed over, not waited on."""
    os.mkfifo(tmp_path / "pipe")
    token = make_token(cli)
    (tmp_path / "z").write_text(token)
    result = cli.raw("scan", str(tmp_path))
    assert result.code == 1 and result.out == f"{tmp_path}/z:1: {key_of(token)}\n"


def test_a_file_name_holding_a_token_is_shown_masked(tmp_path: Path, cli: Cli) -> None:
    """A file named after a token string is shown masked, so the name leaks nothing."""
    token = make_token(cli)
    (tmp_path / token).write_text(f"{token}\n")
    result = cli.raw("scan", str(tmp_path))
    assert result.code == 1
    assert result.out.endswith(f":1: {key_of(token)}\n")
    no_secret(result.text, token)


def test_a_huge_line_is_read_in_pieces(tmp_path: Path, cli: Cli) -> None:
    """A 24 MiB file of one line, tokens across piece boundaries, is found exactly and
    never held whole in memory."""
    tokens = [make_token(cli) for _ in range(3)]
    big = tmp_path / "big.log"
    piece = _scan.PIECE
    with big.open("wb") as f:
        position = 0
        for index, token in enumerate(tokens):  # each across a boundary of pieces
            boundary = (4 + 6 * index) * piece - 50
            f.write(b"x" * (boundary - position) + token.encode())
            position = boundary + len(token)
        f.write(b"y" * (24 * piece - position) + b"\n")
    tracemalloc.start()
    try:
        result = cli.raw("scan", str(big))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.code == 1
    assert result.out.splitlines() == [f"{big}:1: {key_of(t)}" for t in tokens]
    assert peak < 8 * piece


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pieces_find_what_the_whole_line_holds(data: st.DataObject, cli: Cli,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With tiny pieces, a scan finds per line exactly what ``find_tokens`` finds in
    the line whole: a token cut anywhere is found once."""
    monkeypatch.setattr(_scan, "PIECE", data.draw(st.integers(1, 300)))
    tokens = TOKENS.get("all") or TOKENS.setdefault("all", [make_token(cli) for _ in range(3)])
    filler = st.text(alphabet="atk_.\n xyz0AZ-é", max_size=200)
    parts = data.draw(st.lists(st.one_of(filler, st.sampled_from(tokens)), max_size=8))
    text = "".join(parts)
    stream = io.BufferedReader(io.BytesIO(text.encode("utf-8")))
    found = [(f.line, f.key) for f in _scan.scan_stream(stream, "-")]
    expected = [(number, f.key) for number, line in enumerate(text.split("\n"), 1)
                for f in find_tokens(line)]
    assert found == expected


TOKENS: dict[str, list[str]] = {}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_token_deleted_from_a_git_history_is_found_in_it(tmp_path: Path, cli: Cli) -> None:
    """A token committed, then deleted: the tree is clean, ``git log -p | authtoken
    scan -`` (real processes) still finds it, and ``--check`` says it is live."""
    token = make_token(cli)
    repo = tmp_path / "project"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)

    git("init", "-q")
    (repo / "settings.py").write_text("DEBUG = True\n")
    git("add", "-A")
    git("commit", "-q", "-m", "start")
    (repo / "settings.py").write_text(f"DEBUG = True\nTOKEN = '{token}'\n")
    git("commit", "-q", "-am", "oops")
    (repo / "settings.py").write_text("DEBUG = True\n")
    git("commit", "-q", "-am", "remove the token")
    scan_env = {k: v for k, v in env.items() if k != "AUTHTOKEN_SECRET_KEYS"}
    tree = subprocess.run([str(AUTHTOKEN), "scan", "."], cwd=repo, env=scan_env,
                          capture_output=True, text=True, check=False)
    assert (tree.returncode, tree.stdout) == (0, "")
    for extra, status in (((), ""), (("--check", "--database", cli.url), " live")):
        log = subprocess.Popen(["git", "log", "-p"], cwd=repo, env=env,
                               stdout=subprocess.PIPE)
        scan = subprocess.run([str(AUTHTOKEN), "scan", *extra, "-"], stdin=log.stdout,
                              env=env if extra else scan_env, capture_output=True,
                              text=True, check=False)
        assert log.stdout is not None
        log.stdout.close()
        assert log.wait() == 0
        assert scan.returncode == 1, scan.stderr
        lines = scan.stdout.splitlines()
        # the commit that added it (+) and the one that removed it (-)
        assert len(lines) == 2
        assert all(line.startswith("-:") for line in lines)
        assert all(line.endswith(f": {key_of(token)}{status}") for line in lines)
        no_secret(scan.stdout + scan.stderr, token)


def test_a_file_that_cannot_be_opened_is_skipped_with_a_note(tmp_path: Path, cli: Cli) -> None:
    """A dangling symbolic link met in a walk (open fails even for root) is named on
    stderr, and the rest is scanned."""
    token = make_token(cli)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    (tmp_path / "open").write_text(token)
    result = cli.raw("scan", str(tmp_path))
    assert result.code == 1
    assert result.out == f"{tmp_path}/open:1: {key_of(token)}\n"
    assert f"skipped {tmp_path}/dangling: No such file or directory" in result.err
