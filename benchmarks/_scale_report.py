"""``scale.py``'s figures against the targets, and the figures as text.

``targets(report)`` turns the figures into one line per target: what it asks, what was
measured, and ``met``, ``not met`` or ``skipped: why``.  ``show(report)`` prints it all.
The thresholds are the issue's; "stays fast as history grows" is judged here as: after
ten times the history the call takes at most twice as long, or under ``FLOOR_MS`` (5 ms:
round trips and noise, never a scan of a large trail).
"""

from __future__ import annotations

from typing import Any

from _pyjwt_old import OLD_VERSION as OLD_PYJWT

SQLITE_X, SQLITE_OLD_X, MEMORY_X, PG_PER_S = 2.0, 1.0, 3.0, 5_000.0
P99_MS, CLI_MS, BYTES_PER_LOGIN, FLOOR_MS = 100.0, 150.0, 32, 5.0
IMPORT_MODULES_TODAY = 98  # outside the package, `import authtoken`, CPython 3.11
ORM = ("sqlalchemy", "sqlmodel", "alembic")
AUDIT_MAX = 10_000  # the most events one audit_events call returns
GROWTH_READS = ("audit_events(user=U, limit=10)", "audit_events(token_key=K, limit=10)",
                "audit_events(limit=10)", "list_auth_tokens(user=U)")


def _growth(history: list[dict[str, Any]], name: str) -> list[tuple[str, float, float]]:
    """(store, ms after a tenth of the history, ms after all of it) for one call."""
    out = []
    for h in history:
        first, last = h["checkpoints"]
        if name == "revoke_user_tokens":  # per token revoked: the users differ a little
            a, b = (p["revoke_user_tokens_ms"] / max(1, p["revoked"]) for p in (first, last))
        else:
            a, b = first["reads_ms"][name], last["reads_ms"][name]
        out.append((h["store"], a, b))
    return out


def targets(r: dict[str, Any]) -> list[dict[str, str]]:
    """Every target with its verdict (see the module notes)."""
    out: list[dict[str, str]] = []

    def add(key: str, text: str, ok: bool | None, measured: str, why: str = "") -> None:
        verdict = f"skipped: {why}" if ok is None else ("met" if ok else "not met")
        out.append({"id": key, "target": text, "measured": measured, "verdict": verdict})

    many = [row for row in r["rows"] if " of " in row["case"]]
    old = r["versions"]["pyjwt_old"]
    old_why = r["pyjwt_old_skipped"] or (
        f"the --pyjwt-old interpreter has PyJWT {old}" if old != OLD_PYJWT else "")
    for key, backend, column, goal, why in (
            ("sqlite_vs_pyjwt", "SQLite", "ratio_to_pyjwt", SQLITE_X, ""),
            ("sqlite_vs_pyjwt_old", "SQLite", "ratio_to_pyjwt_old", SQLITE_OLD_X, old_why),
            ("memory_vs_pyjwt", "memory", "ratio_to_pyjwt", MEMORY_X, "")):
        found = [row[column] for row in many if row["backend"] == backend and row[column]]
        version = OLD_PYJWT if column.endswith("old") else f"{r['versions']['pyjwt']} (current)"
        add(key, f"many-token {backend} login >= {goal:g}x PyJWT {version}, both bindings",
            None if why or len(found) < 2 else min(found) >= goal,
            " / ".join(f"{x:.2f}x" for x in found) or "-", why)
    pg = [row["calls_per_s"] for row in many if row["backend"] == "PostgreSQL"]
    add("postgres_rate", f"many-token PostgreSQL login >= {PG_PER_S:,.0f}/s per process, "
        "both bindings", min(pg) >= PG_PER_S if pg else None,
        " / ".join(f"{x:,.0f}/s" for x in pg) or "-", r["postgres"]["skipped"] or "")

    exact = r["exactness"]
    add("usage_exact", "use_count/last_used_at exact after flush(), no usage count lost",
        all(e["mismatched"]["use_count"] + e["mismatched"]["last_used_at"] == 0
            for e in exact),
        f"{sum(e['logins'] for e in exact):,} logins, {len(exact)} checks")
    # memory:// may keep only the newest events (it is to be bounded): shown, not judged
    durable = [e for e in exact if e["store"] != "memory"]
    add("events_exact", "no audit event lost (login events add up to the logins; "
        "SQL stores)", all(e["mismatched"]["events"] == 0 for e in durable),
        "; ".join(f"{e['store']}: {e['mismatched']['events']} of "
                  f"{e['events_checked_tokens']:,} tokens off"
                  + (f" (and {n} not read: over {AUDIT_MAX:,} events)"
                     if (n := e["events_beyond_limit"]) else "")
                  + (" (not judged)" if e not in durable else "") for e in exact))
    runs = [(rv["store"], load, rv[load]) for rv in r["revocation"]
            for load in ("alone", "loaded") if rv.get(load)]
    add("revocation_immediate", "a revoked token is refused at once through another "
        "connection", all(x["refused_after"] == x["revoked"] for _, _, x in runs),
        ", ".join(f"{s} {load}: {x['refused_after']}/{x['revoked']}" for s, load, x in runs))
    for rv in r["revocation"]:
        loaded = rv.get("loaded")
        add(f"revocation_p99_{rv['store'].lower()}", f"{rv['store']} revocation p99 < "
            f"{P99_MS:g} ms while {rv['workers']} processes log in",
            loaded["p99_ms"] < P99_MS if loaded else None,
            f"{loaded['p99_ms']:,.1f} ms (alone {rv['alone']['p99_ms']:,.1f} ms)"
            if loaded else "-", rv.get("error") or "no worker processes")
    add("revocation_no_failure", "no revocation fails",
        all(x["failures"] == 0 for _, _, x in runs),
        f"{sum(x['failures'] for _, _, x in runs)} failed of "
        f"{sum(x['count'] for _, _, x in runs)}")

    for name, key in zip((*GROWTH_READS, "revoke_user_tokens"),
                         ("audit_user", "audit_token", "audit_all", "list_user_tokens",
                          "revoke_user_tokens"), strict=True):
        pairs = _growth(r["history"], name)
        add(f"{key}_stays_fast", f"{name} stays fast as history grows",
            all(b <= 2 * a or b < FLOOR_MS for _, a, b in pairs) if pairs else None,
            ", ".join(f"{s} {a:,.2f} -> {b:,.2f} ms" for s, a, b in pairs) or "-",
            "no history run")
    memory = next((h["memory"] for h in r["history"] if h["memory"]), None)
    add("memory_bounded", f"memory:// bounded (< {BYTES_PER_LOGIN} bytes per login)",
        None if memory is None else memory["bytes_per_login_last_nine_tenths"]
        < BYTES_PER_LOGIN,
        f"+{memory['rss_mib'][-1] - memory['rss_mib'][0]:,.0f} MiB, "
        f"{memory['bytes_per_login_last_nine_tenths']:,.0f} B/login" if memory else "-",
        "no history run on memory, or no /proc/self/statm")

    cli = r["cli"]
    login_ms = cli["median_ms"]["authtoken login"]
    add("cli_cold_start", f"authtoken login from a fresh process < {CLI_MS:g} ms",
        login_ms < CLI_MS and not cli["errors"],
        f"{login_ms:,.0f} ms" + (" (it failed)" if cli["errors"] else ""))
    orm = [m for m in cli["heavy_imports_ms"] if m in ORM]
    add("cli_no_orm", "no ORM import on the login path", not orm, ", ".join(orm) or "none")
    modules = cli["import_authtoken_modules"]
    add("import_light", f"import authtoken no heavier than today ({IMPORT_MODULES_TODAY} "
        "modules outside the package)",
        None if modules is None else modules <= IMPORT_MODULES_TODAY,
        f"{modules} modules, {cli['median_ms'][cli['import_command']]:,.0f} ms",
        "could not count")
    return out


def show(r: dict[str, Any]) -> None:
    """Print the report as text: the rows, the checks, and the targets last."""
    v, s = r["versions"], r["sizes"]
    old = (f"PyJWT {v['pyjwt_old']}" if v["pyjwt_old"]
           else f"no old PyJWT ({r['pyjwt_old_skipped']})")
    print(f"authtoken {v['authtoken']} vs PyJWT {v['pyjwt']} and {old} on {v['python']} "
          f"({v['platform']}, {v['cpus']} CPUs)")
    print(f"{s['tokens']:,} tokens of {s['users']:,} users, {s['in_use']:,} in use; best of "
          f"{s['rounds']} rounds of {s['seconds']:g} s; setup {r['setup_s']:.0f} s, "
          f"whole run {r['elapsed_s']:.0f} s")
    pg = r["postgres"]
    print(f"PostgreSQL {pg['server_version']} at {pg['url']} ({pg['origin']})"
          if pg["skipped"] is None else f"PostgreSQL skipped: {pg['skipped']}")
    width = max(len(row["case"]) for row in r["rows"])
    print(f"\n{'case':<{width}}  {'calls/s':>9}  {'µs/call':>8}  {'vs PyJWT':>8}  "
          f"{'vs old':>7}")
    for row in r["rows"]:
        shown = f"{row['ratio_to_pyjwt_old']:.2f}x" if row["ratio_to_pyjwt_old"] else "-"
        print(f"{row['case']:<{width}}  {row['calls_per_s']:>9,.0f}  {row['us_per_call']:>8.2f}"
              f"  {row['ratio_to_pyjwt']:>7.2f}x  {shown:>7}")
    print()
    for e in r["exactness"]:
        off = ", ".join(f"{k} {n}" for k, n in e["mismatched"].items() if n) or "none off"
        if e["events_beyond_limit"]:
            off += f" ({e['events_beyond_limit']} trails over {AUDIT_MAX:,} events not read)"
        print(f"exactness, {e['store']}: {e['tokens']:,} tokens, {e['logins']:,} logins "
              f"(trail read for {e['events_checked_tokens']:,} tokens): {off}")
    if r["revocation"]:
        print(f"\n{'revocations':<24}  {'count':>5}  {'failed':>6}  {'p50 ms':>7}  "
              f"{'p99 ms':>7}  {'max ms':>7}  {'refused after':>13}")
    for rv in r["revocation"]:
        for load in ("alone", "loaded"):
            x = rv.get(load)
            name = f"{rv['store']}, " + (f"{rv['workers']} logging in" if load == "loaded"
                                         else "alone")
            if not x:
                print(f"{name:<24}  {rv.get('error') or 'not run'}")
                continue
            print(f"{name:<24}  {x['count']:>5}  {x['failures']:>6}  {x['p50_ms']:>7.1f}  "
                  f"{x['p99_ms']:>7.1f}  {x['max_ms']:>7.1f}  "
                  f"{str(x['refused_after']) + '/' + str(x['revoked']):>13}")
            if x["first_failure"]:
                print(f"{'':<24}  first failure: {x['first_failure']}")
        if rv.get("logins_per_s"):
            print(f"{'':<24}  (the workers made {rv['logins_per_s']:,.0f} logins/s in all)")
    for h in r["history"]:
        a, b = h["checkpoints"]
        print(f"\nhistory, {h['store']}: {h['logins']:,} logins at {h['logins_per_s']:,.0f}/s"
              f"; ms after {a['logins']:,} and {b['logins']:,} logins")
        for name in a["reads_ms"]:
            print(f"  {name:<38} {a['reads_ms'][name]:>9.3f} {b['reads_ms'][name]:>9.3f}")
        print(f"  {'revoke_user_tokens (per token)':<38} "
              + " ".join(f"{p['revoke_user_tokens_ms'] / max(1, p['revoked']):>9.3f}"
                         for p in (a, b)))
        if h["memory"]:
            print(f"  resident memory (MiB): {h['memory']['rss_mib']}")
    cli = r["cli"]
    print(f"\ncold start, median of {cli['runs']}: "
          + ", ".join(f"{k} {ms:,.0f} ms" for k, ms in cli["median_ms"].items()))
    heavy = ", ".join(f"{k} {ms:,.0f} ms" for k, ms in cli["heavy_imports_ms"].items())
    print(f"  the login imports: {heavy or 'no heavy package'}; fsync calls: {cli['fsyncs']}")
    for error in cli["errors"]:
        print(f"  error: {error}")
    width = max(len(t["target"]) for t in r["targets"])
    print(f"\n{'target':<{width}}  {'verdict':<8}  measured")
    for t in r["targets"]:
        print(f"{t['target']:<{width}}  {t['verdict']:<8}  {t['measured']}")

