"""One Bindery for the whole session, driven through the official `twilio` helper library.

At the end of the session Bindery gets SIGTERM and must exit 0, then `bindery verify` must find
every projection equal to a replay of the event log. Either failure turns the run red: it errors
the teardown of the last test, and `pytest_sessionfinish` also forces a non-zero exit status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest

from bindery_support import BINDERY_BIN, Api, Bindery, start_bindery, stop_and_verify, unique

# Failures found after the last test (shutdown, verify); read by pytest_sessionfinish.
SESSION_FAILURES: List[str] = []


@pytest.fixture(scope="session")
def bindery(tmp_path_factory) -> Bindery:
    if not Path(BINDERY_BIN).exists():
        pytest.exit(f"no Bindery binary at {BINDERY_BIN}; run `make build` or set BINDERY_BIN", returncode=3)
    server = start_bindery(tmp_path_factory.mktemp("bindery-data"))
    yield server
    failures = stop_and_verify(server)
    if failures:
        SESSION_FAILURES.extend(failures)
        pytest.fail("\n\n".join(failures), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    if SESSION_FAILURES and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if SESSION_FAILURES:
        terminalreporter.section("Bindery shutdown / verify", red=True)
        for failure in SESSION_FAILURES:
            terminalreporter.write_line(failure)


@pytest.fixture(scope="session")
def api(bindery) -> Api:
    return Api(bindery, bindery.account_sid, bindery.auth_token)


@pytest.fixture(scope="session")
def chat(api):
    return api.chat


@pytest.fixture(scope="session")
def other_account(bindery) -> Dict[str, str]:
    return bindery.create_account()


@pytest.fixture(scope="session")
def other_api(bindery, other_account) -> Api:
    return Api(bindery, other_account["account_sid"], other_account["auth_token"])


@pytest.fixture
def service(chat):
    svc = chat.services.create(friendly_name=unique("conformance "))
    yield svc
    # Left in place: more data for `bindery verify` to replay at the end of the session.


@pytest.fixture(autouse=True)
def no_contract_violations(request):
    """Belt and braces: a violation swallowed by a test still fails it."""
    apis = [request.getfixturevalue(n) for n in ("api", "other_api") if n in request.fixturenames]
    marks = [len(a.log) for a in apis]
    yield
    for a, start in zip(apis, marks):
        bad = [e for e in a.log[start:] if e.problems]
        assert not bad, "contract violations:\n" + "\n".join(
            f"{e.method} {e.url} -> {e.status}: {e.problems}" for e in bad)
