"""``--token-file F``: read as ssh reads a private key -- a private regular file of the
user's or root's, small, never echoed -- and preferred to standard input and the
environment, on ``login``, ``revoke`` and ``renew`` (``exec`` has its own tests)."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import SECRET_KEY
from support.cli_process import Store, one_line

from authtoken._cli import main
from authtoken._cli._input import MAX_TOKEN_FILE


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A fresh SQLite file in a folder of its own."""
    return Store(tmp_path)


def refused_file(result: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """The one ``InvalidArgument`` line of a refused token file, no secret in it."""
    assert result.returncode == 1, result
    assert result.stdout == ""
    line = one_line(result.stderr)
    assert line.startswith("InvalidArgument: --token-file "), line
    for secret in secrets:
        assert secret not in result.stdout + result.stderr
    return line


# -- files that are fine ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700], ids=oct)
def test_a_private_file_logs_in(store: Store, mode: int) -> None:
    """A file of the user's that only its owner may read logs in; its trailing newline
    and surrounding blanks are stripped."""
    string = store.authorize()
    path = store.token_file(string, mode=mode, content=f"\n  {string}\t\n\n".encode())
    result = store.run("login", "--script-path", "/opt/jobs/export.py",
                       "--token-file", str(path))
    assert result.returncode == 0, result.stderr
    assert "user: alice" in result.stdout
    assert string not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_symlink_to_a_private_file_is_followed(store: Store) -> None:
    """As ssh does: a link to a good file is read; a link to an open one is refused."""
    string = store.authorize("a")
    target = store.token_file(string)
    link = store.folder / "link.token"
    link.symlink_to(target)
    assert store.run("login", "--token-file", str(link)).returncode == 0
    target.chmod(0o644)
    line = refused_file(store.run("login", "--token-file", str(link)), string)
    assert "0644" in line


# -- files that are refused ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666, 0o610],
                         ids=oct)
def test_a_file_others_may_read_or_write_is_refused_with_the_chmod(
        store: Store, mode: int) -> None:
    """Group or others holding any right: refused naming the mode and the chmod that
    fixes it, the token not read, nothing echoed."""
    string = store.authorize("a")
    path = store.token_file(string, mode=mode)
    line = refused_file(store.run("login", "--token-file", str(path)), string)
    assert f"has mode {mode:04o}" in line
    assert f"chmod 600 {path}" in line


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "missing", "fifo", "/dev/zero", "/dev/null"])
def test_what_is_not_a_regular_file_is_refused_without_waiting(
        store: Store, kind: str) -> None:
    """A folder, a missing file, a FIFO nobody writes to (no hang: the file is opened
    without waiting) and devices: refused, naming the path."""
    if kind == "folder":
        path = str(store.folder)
    elif kind == "missing":
        path = str(store.folder / "nothing-here")
    elif kind == "fifo":
        path = str(store.folder / "pipe")
        os.mkfifo(path, 0o600)
    else:
        path = kind
    line = refused_file(store.run("login", "--token-file", path))
    assert repr(path) in line
    expected = {"folder": "is a folder", "missing": "does not exist"}.get(
        kind, "is not a regular file")
    assert expected in line


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"", b"\n", b"  \t\r\n  \n"])
def test_an_empty_file_is_refused(store: Store, content: bytes) -> None:
    """Nothing but whitespace: refused as empty, with how to write one."""
    path = store.token_file("", content=content)
    assert "is empty" in refused_file(store.run("login", "--token-file", str(path)))


@pytest.mark.slow
def test_a_file_larger_than_the_limit_is_refused_and_the_limit_itself_is_read(
        store: Store) -> None:
    """Exactly the limit (the token padded with blanks) logs in; a byte more, or a
    megabyte, is refused, and none of it is shown."""
    string = store.authorize("a")
    padded = (string + "\n").encode().ljust(MAX_TOKEN_FILE, b" ")
    assert len(padded) == MAX_TOKEN_FILE
    fits = store.token_file(string, content=padded)
    assert store.run("login", "--token-file", str(fits)).returncode == 0
    over = store.token_file(string, name="over", content=padded + b" ")
    assert "more than 4096" in refused_file(
        store.run("login", "--token-file", str(over)), string)
    huge = store.token_file(string, name="huge", content=(string.encode() + b"\n") * 9000)
    assert "bytes, more than" in refused_file(
        store.run("login", "--token-file", str(huge)), string)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_refused(store: Store) -> None:
    """Mode 000: permission denied, said plainly."""
    path = store.token_file(store.authorize("a"), mode=0o000)
    assert "permission denied" in refused_file(store.run("login", "--token-file", str(path)))


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_file_of_another_user_is_refused(store: Store) -> None:
    """Owned by neither the user nor root: refused, whatever its mode."""
    string = store.authorize("a")
    path = store.token_file(string, mode=0o400)
    os.chown(path, 65534, 65534)
    line = refused_file(store.run("login", "--token-file", str(path)), string)
    assert "owned by user id 65534" in line


def _set_acl(path: Path, entries: list[tuple[int, int, int]]) -> None:
    """Write a POSIX access ACL (tag, permissions, id) on ``path``; skip if the file
    system keeps none."""
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(path, "system.posix_acl_access", raw)
    except (AttributeError, OSError) as exc:
        pytest.skip(f"no POSIX ACLs here: {exc}")


_ANY = 0xFFFFFFFF  # the id field of entries that name no one


@pytest.mark.slow
def test_a_systemd_credential_with_an_acl_for_the_user_is_read(store: Store) -> None:
    """How systemd hands a credential to ``User=`` on a file system with ACLs: mode
    0400 plus a read entry for the user, which shows as 0440 -- accepted; the same
    layout that also lets the owning group or another user read it -- refused."""
    string = store.authorize("a")
    path = store.token_file(string, mode=0o400)
    me = os.geteuid()
    _set_acl(path, [(0x01, 4, _ANY), (0x02, 4, me), (0x04, 0, _ANY), (0x10, 4, _ANY),
                    (0x20, 0, _ANY)])
    assert (path.stat().st_mode & 0o777) == 0o440
    assert store.run("login", "--token-file", str(path)).returncode == 0
    _set_acl(path, [(0x01, 4, _ANY), (0x02, 4, me), (0x04, 4, _ANY), (0x10, 4, _ANY),
                    (0x20, 0, _ANY)])
    assert "has mode 0440" in refused_file(
        store.run("login", "--token-file", str(path)), string)
    _set_acl(path, [(0x01, 4, _ANY), (0x02, 4, me + 4242), (0x04, 0, _ANY),
                    (0x10, 4, _ANY), (0x20, 0, _ANY)])
    refused_file(store.run("login", "--token-file", str(path)), string)


@pytest.mark.slow
def test_what_the_file_holds_is_never_echoed(store: Store) -> None:
    """A file holding something that is no token: ``InvalidToken``, not quoted."""
    path = store.token_file("", content=b"atk_notatoken.but-shaped-like-one-almost\n")
    result = store.run("login", "--token-file", str(path))
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("InvalidToken: ")
    assert "notatoken" not in result.stderr + result.stdout


# -- where the token comes from ----------------------------------------------------------------
@pytest.mark.slow
def test_the_file_wins_over_standard_input_and_the_environment(store: Store) -> None:
    """Three tokens of three users: the file's is the one logged in."""
    alice, bob, carol = (store.authorize("a", user=u) for u in ("alice", "bob", "carol"))
    path = store.token_file(alice)
    result = store.run("--json", "login", "--token-file", str(path), stdin=bob,
                       env={"AUTHTOKEN_TOKEN": carol})
    assert result.returncode == 0, result.stderr
    assert '"user": "alice"' in result.stdout
    assert store.run("--json", "login", stdin=bob,
                     env={"AUTHTOKEN_TOKEN": carol}).stdout.count('"bob"') == 1
    # A refused file is not made up for by the other two.
    path.chmod(0o644)
    refused_file(store.run("login", "--token-file", str(path), stdin=bob,
                           env={"AUTHTOKEN_TOKEN": carol}), alice, bob, carol)


@pytest.mark.slow
def test_revoke_and_renew_read_the_file_without_token(store: Store) -> None:
    """``renew --token-file F`` and ``revoke --token-file F`` need no ``--token``; with a
    KEY too it is a usage error."""
    string = store.authorize("a", expires="1d", max_lifetime="30d")
    path = store.token_file(string)
    renewed = store.run("--json", "renew", "--token-file", str(path), "--by", "2d")
    assert renewed.returncode == 0, renewed.stderr
    key = string[4:20]
    assert store.run("revoke", key, "--token-file", str(path)).returncode == 2
    revoked = store.run("--json", "revoke", "--token-file", str(path))
    assert revoked.returncode == 0, revoked.stderr
    assert key in revoked.stdout
    after = store.run("login", "--token-file", str(path))
    assert one_line(after.stderr).startswith("TokenRevoked: ")


# -- anything at all in the file -----------------------------------------------------------------
def test_any_content_logs_in_or_is_a_clean_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arbitrary bytes, or a real token wrapped in arbitrary blanks: exit 0 with the
    user, or exit 1 with one line naming an error class -- never a traceback, never the
    content echoed."""
    monkeypatch.setenv("AUTHTOKEN_SECRET_KEYS", SECRET_KEY)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder))
        string = store.authorize("a")
        path = Path(folder) / "token"

        blanks = st.text(alphabet=" \t\r\n\f\v", max_size=20)
        contents = st.one_of(
            st.binary(max_size=MAX_TOKEN_FILE + 64),
            st.builds(lambda a, b: (a + string + b).encode(), blanks, blanks),
            st.builds(lambda cut: string[:cut].encode(), st.integers(0, len(string) - 1)),
        )

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(content=contents)
        def check(content: bytes) -> None:
            path.write_bytes(content)
            path.chmod(0o600)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["--database", store.url, "login", "--token-file", str(path)])
            if content.strip() == string.encode():
                assert code == 0, err.getvalue()
                assert "user: alice" in out.getvalue()
            else:
                assert code == 1
                line = one_line(err.getvalue())
                assert line.split(":", 1)[0] in ("InvalidToken", "InvalidArgument"), line
                assert "Traceback" not in line
            shown = content.decode("utf-8", "replace").strip()
            if len(shown) >= 12:
                assert shown not in out.getvalue() + err.getvalue()
            assert string not in out.getvalue() + err.getvalue()

        check()
