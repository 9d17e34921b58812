"""``authtoken upstream link|list|unlink`` run as the console script against the test OIDC
provider and Spatium authority of ``authtoken.testing`` on 127.0.0.1: linking by a
password on standard input or a refresh-token file, listing, unlinking, relinking a link
that needs it, and the upstreams file's refusals -- never a password in any output."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import SECRET_KEY
from support.cli_process import Store, one_line

from authtoken import (
    AuthToken,
    InvalidArgument,
    Security,
    Session,
    SessionExpired,
    SQLRepository,
)
from authtoken._cli._upstream_config import load_upstreams
from authtoken.broker import Broker, OIDCUpstream
from authtoken.testing import FakeClock, OIDCProvider, SpatiumAuthority

SPATIUM_USER = "alice-at-spatium"
SPATIUM_PASSWORD = "Sp4tium-sentinel-password-31"


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    """The OIDC provider and its space: one-minute tokens, rotating refresh tokens."""
    with OIDCProvider(lifetime=60, password="oidc-sentinel-password-42") as running:
        yield running


@pytest.fixture(scope="module")
def authority() -> Iterator[SpatiumAuthority]:
    """A Spatium authority with one account."""
    with SpatiumAuthority() as running:
        running.add_account(SPATIUM_USER, SPATIUM_PASSWORD)
        yield running


@pytest.fixture
def store(tmp_path: Path, provider: OIDCProvider, authority: SpatiumAuthority) -> Store:
    """A fresh SQLite file and an upstreams file naming the provider three ways."""
    provider.refuse_refresh = False
    upstreams = tmp_path / "upstreams.toml"
    upstreams.write_text(f"""
[upstreams.space]
type = "oidc"
space = "{provider.space_url}"

[upstreams.realm]
type = "oidc"
authority = "{provider.issuer}"
client_id = "{OIDCProvider.PUBLIC_CLIENT}"

[upstreams.spatium]
type = "spatium"
url = "{authority.url}"
token_id = "nightly"
permissions = ["reports:read"]
""")
    upstreams.chmod(0o600)
    return Store(tmp_path)


def upstream(store: Store, *args: str, stdin: str | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``authtoken upstream *args`` with the store's upstreams file in the environment."""
    environment = {"AUTHTOKEN_UPSTREAMS": str(store.folder / "upstreams.toml"), **(env or {})}
    return store.run("upstream", *args, stdin=stdin, env=environment)


def links(store: Store, user: str = "alice") -> dict[str, str]:
    result = upstream(store, "list", "--user", user, "--json")
    assert result.returncode == 0, result.stderr
    found: dict[str, str] = json.loads(result.stdout)["links"]
    return found


def no_secret(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in secrets:
        assert secret not in result.stdout + result.stderr


@pytest.mark.slow
def test_link_by_password_on_stdin_list_and_unlink(store: Store,
                                                   provider: OIDCProvider) -> None:
    """A password piped in links the account (space and authority forms); list shows it;
    unlink forgets it, twice without error."""
    result = upstream(store, "link", "space", "--user", "alice", "--username", "alice",
                      stdin=provider.password + "\n")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "linked space for alice\n", "")
    result = upstream(store, "--json", "link", "realm", "--user", "alice",
                      "--username", "alice", stdin=provider.password)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"user": "alice", "name": "realm", "state": "ok"}
    assert links(store) == {"space": "ok", "realm": "ok"}
    assert links(store, "bob") == {}
    table = upstream(store, "list", "--user", "alice")
    assert table.stdout.split("\n")[0].split() == ["NAME", "STATE"]
    assert ["realm", "ok"] in [line.split() for line in table.stdout.splitlines()]
    assert upstream(store, "unlink", "space", "--user", "alice").stdout == "unlinked space\n"
    again = upstream(store, "--json", "unlink", "space", "--user", "alice")
    assert (again.returncode, json.loads(again.stdout)) == (
        0, {"user": "alice", "name": "space", "unlinked": False})
    assert links(store) == {"realm": "ok"}
    assert upstream(store, "list", "--user", "bob").stdout == (
        "no upstream is linked for bob\n")
    with store.security() as security:  # the link the command made is used by a job
        session = Session(security)
        session.login_by_auth_token(security.authorize_token(AuthToken("upstream:realm"),
                                                             user="alice"))
        with Broker(security, {"realm": OIDCUpstream(provider.issuer, "space")}) as broker:
            assert provider.check(broker.access_token(session, "realm")) is not None


@pytest.mark.slow
def test_link_spatium_integer_user(store: Store, authority: SpatiumAuthority) -> None:
    """Spatium's credentials factor, for the integer user 42."""
    result = upstream(store, "--json", "link", "spatium", "--user", "42",
                      "--username", SPATIUM_USER, stdin=SPATIUM_PASSWORD + "\r\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"user": 42, "name": "spatium", "state": "ok"}
    assert links(store, "42") == {"spatium": "ok"}
    assert links(store, "alice") == {}


@pytest.mark.slow
def test_link_by_refresh_token_file(store: Store, provider: OIDCProvider) -> None:
    """A refresh token in a private file links the account; it is spent (rotated), so
    linking by it again is refused; a readable file is refused before any request."""
    answer = httpx.post(provider.token_url, data={
        "grant_type": "password", "client_id": OIDCProvider.PUBLIC_CLIENT,
        "username": "alice", "password": provider.password})
    refresh_token = answer.json()["refresh_token"]
    path = store.token_file(refresh_token, name="refresh.token")
    result = upstream(store, "link", "realm", "--user", "alice",
                      "--refresh-token-file", str(path))
    assert (result.returncode, result.stdout) == (0, "linked realm for alice\n"), result.stderr
    assert links(store) == {"realm": "ok"}
    spent = upstream(store, "link", "realm", "--user", "bob", "--refresh-token-file", str(path))
    assert spent.returncode == 1 and one_line(spent.stderr).startswith("IssuerError: ")
    no_secret(spent, refresh_token)
    path.chmod(0o644)
    before = provider.counts["refresh_token"]
    loose = upstream(store, "link", "realm", "--user", "bob", "--refresh-token-file",
                     str(path))
    assert loose.returncode == 1
    assert one_line(loose.stderr).startswith("InvalidArgument: --refresh-token-file ")
    assert provider.counts["refresh_token"] == before
    no_secret(loose, refresh_token)


@pytest.mark.slow
def test_wrong_password_is_refused_and_never_shown(store: Store,
                                                   provider: OIDCProvider) -> None:
    """The upstream's refusal is exit 1, IssuerError, the password in no output; nothing
    is linked."""
    wrong = "not-" + provider.password
    for extra in ((), ("--json",)):
        result = upstream(store, *extra, "link", "space", "--user", "alice",
                          "--username", "alice", stdin=wrong)
        assert result.returncode == 1 and result.stdout == ""
        line = one_line(result.stderr)
        assert line.startswith('{"error": "IssuerError"' if extra else "IssuerError: "), line
        no_secret(result, wrong)
    spatium = upstream(store, "link", "spatium", "--user", "alice", "--username",
                       SPATIUM_USER, stdin="wrong-" + SPATIUM_PASSWORD)
    assert spatium.returncode == 1 and spatium.stderr.startswith("IssuerError: ")
    no_secret(spatium, SPATIUM_PASSWORD)
    assert links(store) == {}


@pytest.mark.slow
def test_relink_heals_needs_relink(store: Store, provider: OIDCProvider) -> None:
    """A job's refresh the provider refuses marks the link needs_relink; list says so;
    linking again from the command line heals it."""
    assert upstream(store, "link", "space", "--user", "alice", "--username", "alice",
                    stdin=provider.password).returncode == 0
    clock = FakeClock(datetime.now(timezone.utc))
    repository = SQLRepository(store.url)
    with Security(repository, secret_keys=SECRET_KEY, clock=clock) as security, \
            Broker(security, {"space": OIDCUpstream.from_space(provider.space_url)}) as broker:
        session = Session(security)
        session.login_by_auth_token(security.authorize_token(AuthToken("upstream:space"),
                                                             user="alice"))
        provider.refuse_refresh = True
        clock.advance(seconds=120)
        with pytest.raises(SessionExpired):
            broker.access_token(session, "space")
        assert links(store) == {"space": "needs_relink"}
        provider.refuse_refresh = False
        table = upstream(store, "list", "--user", "alice")
        assert ["space", "needs_relink"] in [line.split() for line in table.stdout.splitlines()]
        assert upstream(store, "link", "space", "--user", "alice", "--username", "alice",
                        stdin=provider.password).returncode == 0
        assert links(store) == {"space": "ok"}
    with store.security() as security, \
            Broker(security, {"space": OIDCUpstream.from_space(provider.space_url)}) as broker:
        session = Session(security)  # a job running now, on the real clock
        session.login_by_auth_token(security.authorize_token(AuthToken("upstream:space"),
                                                             user="alice"))
        assert provider.check(broker.access_token(session, "space")) is not None


def test_unknown_upstream_and_bad_names(store: Store, provider: OIDCProvider) -> None:
    """An upstream the file does not name is refused before any request, naming the
    file and what it names; so is a name no link can have."""
    before = provider.counts["password"]
    result = upstream(store, "link", "elsewhere", "--user", "alice", "--username", "alice",
                      stdin=provider.password)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("InvalidArgument: the upstreams file ")
    assert "upstreams.toml" in line and "'elsewhere'" in line
    assert "realm, space, spatium" in line
    bad = upstream(store, "unlink", "../x", "--user", "alice")
    assert bad.returncode == 1 and "an upstream's name is" in bad.stderr
    assert provider.counts["password"] == before


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ("--password", "hunter2-sentinel"),
    ("--password=hunter2-sentinel",),
    ("--refresh-token", "hunter2-sentinel"),
    ("hunter2-sentinel",),
    ("--username", "alice", "hunter2-sentinel"),
])
def test_secret_as_argument_is_refused_unechoed(store: Store, argv: tuple[str, ...]) -> None:
    """A password or refresh token given as an argument (or a stray word that may be
    one) is a usage error, exit 2, that never repeats it."""
    for extra in ((), ("--json",)):
        result = upstream(store, *extra, "link", "space", "--user", "alice", *argv)
        assert result.returncode == 2, result
        assert result.stdout == ""
        no_secret(result, "hunter2-sentinel")
        assert "argument" in result.stderr
    assert links(store) == {}


def test_username_or_refresh_token_file_needed(store: Store) -> None:
    """link needs exactly one way of linking; an empty or two-line standard input is no
    password."""
    assert upstream(store, "link", "space", "--user", "alice").returncode == 2
    both = upstream(store, "link", "space", "--user", "alice", "--username", "a",
                    "--refresh-token-file", "f")
    assert both.returncode == 2
    for stdin in ("", "\n", "one\ntwo\n"):
        result = upstream(store, "link", "space", "--user", "alice", "--username", "alice",
                          stdin=stdin)
        assert result.returncode == 1 and result.stderr.startswith("InvalidArgument: ")
        no_secret(result, "two")


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


_OIDC = '[upstreams.space]\ntype = "oidc"\n'
_SPATIUM = ('[upstreams.sp]\ntype = "spatium"\nurl = "https://auth.example.org"\n'
            'token_id = "nightly"\n')


@pytest.mark.parametrize(("content", "expected"), [
    ("", "names no upstream"),
    ("[other]\nx = 1\n", "[other] is not known here"),
    ("[upstreams\n", "is not valid TOML"),
    ('upstreams = "x"\n', "names no upstream"),
    ('[upstreams]\nspace = "x"\n', "upstreams.space must be a table"),
    ('[upstreams."bad name"]\ntype = "oidc"\n', "cannot name an upstream"),
    ("[upstreams.space]\nspace = \"https://a.example\"\n", "[upstreams.space] type: is missing"),
    ('[upstreams.space]\ntype = "saml"\n', 'type: must be "oidc" or "spatium"'),
    (_OIDC + 'space = "https://a.example"\ncolour = "red"\n', "colour: is not a key of"),
    (_OIDC + 'space = "http://lessons.example.org"\n', "[upstreams.space] space:"),
    (_OIDC + 'space = 7\n', "space: must be a string, not an integer"),
    (_OIDC + 'space = ""\n', "space: must be a non-empty string"),
    (_OIDC, "needs space, or authority and client_id"),
    (_OIDC + 'space = "https://a.example"\nclient_id = "x"\n', "client_id: is not used "
                                                               "with space"),
    (_OIDC + 'authority = "https://id.example"\n', "client_id: is missing"),
    (_OIDC + 'authority = "ftp://id.example"\nclient_id = "x"\n', "authority:"),
    (_OIDC + 'authority = "https://id.example"\nclient_id = "x"\n'
             'client_secret_file = "missing.secret"\n', "client_secret_file: the secret file"),
    (_SPATIUM, "permissions: is missing"),
    (_SPATIUM + 'permissions = "read"\n', "permissions: must be a non-empty array"),
    (_SPATIUM + "permissions = []\n", "permissions: must be a non-empty array"),
    (_SPATIUM + 'permissions = ["read"]\nleeway = true\n', "leeway: must be a number"),
    (_SPATIUM.replace("https://auth", "http://auth") + 'permissions = ["read"]\n', "url:"),
])
def test_bad_upstreams_files(store: Store, content: str, expected: str) -> None:
    """Each mistake is exit 1 with a message naming the file, the table and the key."""
    path = write(store.folder / "bad.toml", content)
    result = upstream(store, "link", "space", "--user", "alice", "--username", "alice",
                      "--upstreams", str(path), stdin="pw-sentinel")
    assert result.returncode == 1, result
    line = one_line(result.stderr)
    assert line.startswith(f"InvalidArgument: the upstreams file '{path}'"), line
    assert expected in line, line
    no_secret(result, "pw-sentinel")


def test_inline_secret_refused_unechoed(store: Store) -> None:
    """A client secret written in the file is refused, the secret not quoted."""
    path = write(store.folder / "inline.toml", _OIDC + 'authority = "https://id.example"\n'
                 'client_id = "x"\nclient_secret = "inline-sentinel-secret"\n')
    result = upstream(store, "link", "space", "--user", "alice", "--username", "alice",
                      "--upstreams", str(path), stdin="pw")
    assert result.returncode == 1
    assert "client_secret: a secret is never written in this file" in result.stderr
    no_secret(result, "inline-sentinel-secret")


def test_upstreams_file_itself_checked(store: Store, tmp_path: Path) -> None:
    """A missing file says how to make one; a file others may write is refused (they
    would choose where the password goes); a folder is no file."""
    missing = upstream(store, "link", "space", "--user", "alice", "--username", "alice",
                       "--upstreams", str(tmp_path / "none.toml"), stdin="pw")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    loose = store.folder / "upstreams.toml"
    loose.chmod(0o666)
    result = upstream(store, "link", "space", "--user", "alice", "--username", "alice",
                      stdin="pw")
    assert result.returncode == 1 and "writable by other users" in result.stderr
    assert "chmod go-w" in result.stderr
    folder = upstream(store, "link", "space", "--user", "alice", "--username", "alice",
                      "--upstreams", str(tmp_path), stdin="pw")
    assert folder.returncode == 1 and "not a regular file" in folder.stderr


def test_client_secret_file(tmp_path: Path) -> None:
    """A confidential client's secret is read from a private file beside the upstreams
    file; one others may read is refused."""
    secret = write(tmp_path / "realm.secret", "sentinel-client-secret\n")
    path = write(tmp_path / "u.toml", _OIDC + 'authority = "https://id.example"\n'
                 'client_id = "x"\nclient_secret_file = "realm.secret"\n')
    upstreams = load_upstreams(path)
    assert "sentinel-client-secret" not in repr(upstreams)
    secret.chmod(0o644)
    with pytest.raises(InvalidArgument) as info:
        load_upstreams(path)
    assert "client_secret_file" in str(info.value)
    assert "sentinel-client-secret" not in str(info.value)


_VALUES = st.one_of(st.text(max_size=40), st.integers(-2**63, 2**63 - 1), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False), st.none(),
                    st.lists(st.text(max_size=10), max_size=3))


def toml_value(value: object) -> str:
    """``value`` as TOML (JSON's escapes are TOML's; DEL must be escaped too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["oidc", "spatium"]),
       values=st.dictionaries(st.sampled_from(["space", "authority", "client_id", "scope",
                                               "url", "token_id", "permissions", "leeway",
                                               "client_secret"]), _VALUES, max_size=5))
def test_any_table_loads_or_is_refused_by_key(tmp_path: Path, kind: str,
                                              values: dict[str, object]) -> None:
    """Whatever a table holds, it loads or is refused with InvalidArgument naming the
    file and the table, never quoting the client secret."""
    lines = ["[upstreams.x]", f'type = "{kind}"']
    lines += [f"{key} = {toml_value(value)}" for key, value in values.items()
              if value is not None]
    path = write(tmp_path / "h.toml", "\n".join(lines) + "\n")
    try:
        loaded = load_upstreams(path)
    except InvalidArgument as exc:
        message = str(exc)
        assert message.startswith(f"the upstreams file '{path}', [upstreams.x]"), message
        secret = values.get("client_secret")
        if isinstance(secret, str) and len(secret) > 3:
            assert secret not in message
    else:
        assert list(loaded) == ["x"]
        assert "client_secret" not in values


def test_documented_upstreams_file_loads(tmp_path: Path) -> None:
    """The upstreams file docs/cli.md shows loads as it says (its secret file beside it),
    and the error it quotes is the one given."""
    page = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    section = page[page.index("\n## upstream\n"):page.index("\n## Exit status\n")]
    example = section.split("```toml\n")[1].split("```")[0]
    write(tmp_path / "staff.secret", "a-client-secret\n")
    loaded = load_upstreams(write(tmp_path / "upstreams.toml", example))
    assert sorted(loaded) == ["space", "spatium", "staff"]
    quoted = section.split("```text\n")[1].split("```")[0].strip()
    documented = quoted.split("'")[1]
    bad = example.replace('permissions = ["lessons:read"]', "permissions = []")
    path = tmp_path / "documented.toml"
    with pytest.raises(InvalidArgument) as info:
        load_upstreams(write(path, bad))
    assert f"InvalidArgument: {info.value}" == quoted.replace(documented, str(path))


def run_at_terminal(store: Store, args: list[str], answer: str) -> tuple[int, str]:
    """``authtoken *args`` on a pseudo-terminal of its own; ``answer`` typed at the
    password prompt.  Its exit status, and everything the terminal showed."""
    import os
    import pty
    import select

    from support.cli_process import COMMAND, base_environment

    environment = base_environment({"AUTHTOKEN_UPSTREAMS": str(store.folder / "upstreams.toml")})
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(COMMAND[0], [*COMMAND, "--database", store.url, *args], environment)
    shown, typed = b"", False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if not typed and b"password of " in shown:
                os.write(master, answer.encode() + b"\n")
                typed = True
    finally:
        os.close(master)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")


@pytest.mark.slow
# The child only calls execve: fork's risk with threads (the servers') does not apply.
@pytest.mark.filterwarnings("ignore:This process.*multi-threaded:DeprecationWarning")
def test_password_typed_at_a_terminal_is_not_echoed(store: Store,
                                                    provider: OIDCProvider) -> None:
    """At a terminal the password is asked for, not echoed, and links the account."""
    code, shown = run_at_terminal(
        store, ["upstream", "link", "space", "--user", "alice", "--username", "alice"],
        provider.password)
    assert code == 0, shown
    assert "password of alice at space: " in shown
    assert "linked space for alice" in shown
    assert provider.password not in shown
    assert links(store) == {"space": "ok"}
