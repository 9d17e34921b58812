"""Fixtures of the admin tests: a ``Security`` on the fake clock, over memory (``mem``)
or over memory and a real SQLite file in turn (``security``); for the page's browser
tests, a headless Chromium (``chrome``, one per test module) and the admin application
served by uvicorn over a real SQLite file (``site``).

The browser tests need Debian's ``chromium`` and ``chromium-driver``; locally they skip
with the reason when those are missing, in CI (``CI=true``) that is a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.served import served

from authtoken import MemoryRepository, Repository, Security, SQLRepository
from authtoken.admin import DelegationTokenAuth, create_app
from authtoken.testing import FakeClock

ADMIN_KEYS = ["admin-test-key"]
PAGE_KEYS = ["page-test-key"]


@pytest.fixture(params=["memory", "sqlite"])
def security(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock,
             ) -> Iterator[Security]:
    """A Security over memory and over a real SQLite file, on a fake clock."""
    repository: Repository = (MemoryRepository() if request.param == "memory"
                              else SQLRepository(f"sqlite:///{tmp_path / 'admin.db'}"))
    sec = Security(repository, secret_keys=ADMIN_KEYS, clock=clock)
    yield sec
    sec.close()


@pytest.fixture
def mem(clock: FakeClock) -> Iterator[Security]:
    """A Security over memory, for tests that need no second backend."""
    sec = Security(MemoryRepository(), secret_keys=ADMIN_KEYS, clock=clock)
    yield sec
    sec.close()


# -- a real browser and a real server, for the page -------------------------------------------
def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = [p for p in (browser, driver) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        reason = f"no headless Chromium here ({', '.join(missing)}): " \
                 "apt install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test is required in CI: {reason}")
        pytest.skip(reason)
    return browser, driver


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="authtoken-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 # Names under .test reach 127.0.0.1 but, unlike it, are not "potentially
                 # trustworthy": Chromium sends them no Sec-Fetch-* headers, as it would
                 # a plain-HTTP intranet host.
                 "--host-resolver-rules=MAP *.test 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Security, str]]:
    """The admin application over a real SQLite file under uvicorn on 127.0.0.1."""
    security = Security(SQLRepository(f"sqlite:///{tmp_path / 'browser.db'}"),
                        secret_keys=PAGE_KEYS)
    app = create_app(security, authenticate=DelegationTokenAuth(security))
    with served(app) as url:
        yield security, url
    security.close()
