"""Running Bindery and driving it through twilio-python with every response checked against
the contract; shared by conftest.py and the tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from requests.structures import CaseInsensitiveDict
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from bindery_contract import Contract, ContractError

MISSING_SERVICE = "IS" + "0" * 32
MISSING_USER = "US" + "0" * 32
MISSING_BINDING = "BS" + "0" * 32
MISSING_CREDENTIAL = "CR" + "0" * 32
ALL_MESSAGE_TYPES = {"new_message", "added_to_channel", "invited_to_channel", "removed_from_channel"}


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def list_error(exc: Exception):
    """(HTTP status, Twilio code) of the TwilioException("Unable to fetch page", response) that
    twilio-python raises when a list page is not a 200."""
    response = exc.args[1]
    return response.status_code, json.loads(response.text)["code"]


ROOT = Path(__file__).resolve().parents[3]
BINDERY_BIN = os.environ.get("BINDERY_BIN") or str(ROOT / "target" / "debug" / "bindery")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

CONTRACT = Contract()


# --------------------------------------------------------------------------------------------
# Running Bindery
# --------------------------------------------------------------------------------------------


def child_env() -> Dict[str, str]:
    """The caller's environment minus BINDERY_* settings, so a developer's shell can't change
    what Bindery is tested with (log level, listen address, limits)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_")}


def bindery_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BINDERY_BIN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )


def bindery_json(*args: str) -> Dict[str, Any]:
    done = bindery_cli(*args)
    assert done.returncode == 0, f"bindery {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)


@dataclass
class Bindery:
    proc: subprocess.Popen
    data_dir: Path
    base_url: str
    account_sid: str
    auth_token: str
    stdout: List[str] = field(default_factory=list)
    stderr: List[str] = field(default_factory=list)

    def log_tail(self, n: int = 40) -> str:
        return "".join(self.stderr[-n:])

    def create_account(self) -> Dict[str, str]:
        return bindery_json("accounts", "create", "--data-dir", str(self.data_dir))

    def create_key(self, account_sid: str) -> Dict[str, str]:
        return bindery_json("keys", "create", "--account", account_sid, "--data-dir", str(self.data_dir))

    def revoke_key(self, key_sid: str) -> None:
        done = bindery_cli("keys", "revoke", key_sid, "--data-dir", str(self.data_dir))
        assert done.returncode == 0, f"bindery keys revoke exited {done.returncode}: {done.stderr}"


def _drain(stream, sink: List[str], wake: threading.Event) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        wake.set()
    wake.set()


def first_account(data_dir: Path):
    """The (account_sid, auth_token) a fresh server wrote for its first account."""
    account = json.loads((data_dir / "first-account.json").read_text())
    return account["account_sid"], account["auth_token"]


def start_bindery(data_dir: Path) -> Bindery:
    proc = subprocess.Popen(
        [BINDERY_BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=child_env(),
    )
    out: List[str] = []
    err: List[str] = []
    wake = threading.Event()
    for stream, sink in ((proc.stdout, out), (proc.stderr, err)):
        threading.Thread(target=_drain, args=(stream, sink, wake), daemon=True).start()

    deadline = time.monotonic() + START_TIMEOUT
    port = sid = token = None
    while time.monotonic() < deadline:
        text_err = "".join(err)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text_err)
        port = port or (m and m.group(1))
        # With no terminal on stdout, the first account's credentials go to a file that only
        # its owner may read; it is written before the server listens.
        if port and not sid:
            sid, token = first_account(data_dir)
        if port and sid and token:
            break
        if proc.poll() is not None:
            break
        wake.wait(0.2)
        wake.clear()
    if not (port and sid and token):
        proc.kill()
        proc.wait()
        pytest.exit(
            f"Bindery ({BINDERY_BIN}) did not start: exit={proc.returncode} port={port} account={sid}\n"
            f"stdout:\n{''.join(out)}\nstderr:\n{''.join(err)}",
            returncode=3,
        )
    return Bindery(proc, data_dir, f"http://127.0.0.1:{port}", sid, token, out, err)


def stop_and_verify(server: Bindery) -> List[str]:
    failures: List[str] = []
    server.proc.send_signal(signal.SIGTERM)
    try:
        rc = server.proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        rc = server.proc.wait()
        failures.append(f"Bindery did not stop within {STOP_TIMEOUT}s of SIGTERM")
    if rc != 0:
        failures.append(f"Bindery exited {rc} after SIGTERM (expected 0); stderr tail:\n{server.log_tail()}")
    done = bindery_cli("verify", "--data-dir", str(server.data_dir), timeout=120)
    if done.returncode != 0:
        failures.append(
            f"`bindery verify` exited {done.returncode}: projections differ from a replay of the log\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return failures


# --------------------------------------------------------------------------------------------
# The helper library, with every response checked against the contract
# --------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    method: str
    url: str
    params: Any
    data: Any
    status: int
    text: str
    headers: Dict[str, str]
    problems: List[str]

    def json(self) -> Any:
        return json.loads(self.text)


class ContractCheckingHttpClient(TwilioHttpClient):
    """The library's own HTTP client; each response is recorded and checked against the
    contract before the library sees it. A violation raises ContractError right there, so the
    test that caused it fails (even one that expects a TwilioRestException)."""

    def __init__(self, origin: str, log: List[Exchange]):
        super().__init__(timeout=15)
        # Talk to 127.0.0.1 directly whatever HTTP(S)_PROXY the environment has.
        self.session.trust_env = False
        self.origin = origin
        self.log = log

    def request(self, method, url, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False):
        response = super().request(method, url, params=params, data=data, headers=headers, auth=auth,
                                   timeout=timeout, allow_redirects=allow_redirects)
        hdrs = CaseInsensitiveDict(response.headers or {})
        problems = CONTRACT.problems(method, url, response.status_code, response.text, hdrs, self.origin)
        self.log.append(Exchange(method.upper(), url, params, data, response.status_code, response.text, hdrs,
                                 problems))
        if problems:
            raise ContractError(
                f"{method.upper()} {url} params={params} data={data} -> {response.status_code}\n"
                + "\n".join(" - " + p for p in problems)
                + f"\nbody: {response.text[:2000]}"
            )
        return response


class Api:
    """A `twilio.rest.Client` pointed at Bindery, plus the log of what it received."""

    def __init__(self, server: Bindery, username: str, password: str, account_sid: Optional[str] = None):
        self.log: List[Exchange] = []
        self.http = ContractCheckingHttpClient(server.base_url, self.log)
        self.client = Client(username, password, account_sid, http_client=self.http)
        # twilio-python 9.13: each domain is a twilio.base.domain.Domain whose `base_url`
        # ("https://chat.twilio.com") is joined with "v2/..." by Domain.absolute_url.
        self.client.chat.base_url = server.base_url
        self.chat = self.client.chat.v2
        self.base_url = server.base_url

    @property
    def last(self) -> Exchange:
        return self.log[-1]

    def post(self, uri: str, data: Dict[str, Any]):
        """The library's generic request: Version.request(method, uri, params, data, headers, ...),
        uri relative to /v2. Returns twilio.http.response.Response (no exception on 4xx)."""
        return self.chat.request("POST", uri, data=data)

    def register(self, service_sid: str, user: str, binding_type: str, address: str,
                 endpoint: Optional[str] = None, credential_sid: Optional[str] = None,
                 message_types: Optional[List[str]] = None):
        data: Dict[str, Any] = {"BindingType": binding_type, "Address": address}
        if endpoint is not None:
            data["Endpoint"] = endpoint
        if credential_sid is not None:
            data["CredentialSid"] = credential_sid
        if message_types is not None:
            data["MessageTypes"] = message_types
        return self.post(f"Services/{service_sid}/Users/{user}/Bindings", data)


