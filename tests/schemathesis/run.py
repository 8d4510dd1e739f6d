"""Schemathesis against Bindery's own /openapi.json (run through run.sh).

1. Starts `bindery serve` on 127.0.0.1 and a random port, on a fresh temp data dir, with every
   BINDERY_* variable removed from its environment.
2. Seeds real data through the API: push credentials (of the test-only material in
   tests/fixtures, since Bindery reads what it is given), a service with users (plain and awkward
   identities) and bindings, plus resources kept apart for the DELETE operations, so that the
   generated requests reach real resources instead of 404-ing on random SIDs.
3. Writes a schemathesis.toml whose dictionaries feed those SIDs and identities into the path
   parameters (and `Identity`, `CredentialSid`, `PageToken` where they appear), each with a
   probability below 1 so that generated values are still sent too.
4. Runs schemathesis with Basic auth as the first account and the checks not_a_server_error,
   response_schema_conformance and content_type_conformance on every operation, plus
   status_code_conformance on the operations whose responses document their errors (Bindery's
   extensions; Twilio's spec lists only the success status of its operations, so there every
   4xx would be "undocumented").
5. Counts the requests in the NDJSON report (and fails on any 5xx it holds, as a second check),
   stops Bindery with SIGTERM (it must exit 0) and runs `bindery verify` (must exit 0).

Exit status: 0 when all of that passed. Environment knobs (all optional):
  SCHEMATHESIS_MAX_EXAMPLES (default 150) test cases per operation and phase,
  SCHEMATHESIS_WORKERS (default 4), SCHEMATHESIS_SEED (default: random, printed),
  SCHEMATHESIS_KEEP=1 keeps the temp dir (data dir, config, reports) for inspection.
Extra arguments are passed to `schemathesis run`.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BINDERY_BIN = os.environ.get("BINDERY_BIN") or str(ROOT / "target" / "debug" / "bindery")
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "150"))
WORKERS = int(os.environ.get("SCHEMATHESIS_WORKERS", "4"))
SEED = os.environ.get("SCHEMATHESIS_SEED")
KEEP = os.environ.get("SCHEMATHESIS_KEEP") == "1"
# A real SID or identity is used this often where one fits; generated values otherwise.
REAL = 0.75


def log(message: str) -> None:
    print(f"[schemathesis/run.py] {message}", flush=True)


def child_env() -> dict:
    """The caller's environment minus BINDERY_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_")}


# ---------------------------------------------------------------------------------------------
# Bindery
# ---------------------------------------------------------------------------------------------


class Bindery:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.out: list[str] = []
        self.err: list[str] = []
        self.proc = subprocess.Popen(
            [BINDERY_BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=child_env(),
        )
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._drain, args=(stream, sink), daemon=True).start()
        deadline = time.monotonic() + 30
        port = sid = token = None
        while time.monotonic() < deadline and not (port and sid and token):
            text_err = "".join(self.err)
            port = port or _group(r"listening on http://127\.0\.0\.1:(\d+)", text_err)
            # The first account's credentials are in a file of the data dir (no terminal here),
            # written before the server listens.
            if port and not sid:
                account = json.loads((data_dir / "first-account.json").read_text())
                sid, token = account["account_sid"], account["auth_token"]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not (port and sid and token):
            self.proc.kill()
            self.proc.wait()
            raise SystemExit(
                f"Bindery did not start (exit {self.proc.returncode}):\n"
                f"stdout:\n{''.join(self.out)}\nstderr:\n{''.join(self.err)}"
            )
        self.base_url = f"http://127.0.0.1:{port}"
        self.account_sid, self.auth_token = sid, token

    @staticmethod
    def _drain(stream, sink):
        for line in iter(stream.readline, ""):
            sink.append(line)

    def request(self, method: str, path: str, form: list | None = None) -> tuple[int, dict | None]:
        data = urllib.parse.urlencode(form or [], doseq=True).encode() if form is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        credentials = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        request.add_header("Authorization", f"Basic {credentials}")
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        return status, (json.loads(text) if text else None)

    def must(self, status: int, method: str, path: str, form: list | None = None) -> dict | None:
        got, body = self.request(method, path, form)
        if got != status:
            raise SystemExit(f"seeding: {method} {path} {form} answered {got}, not {status}: {body}")
        return body

    def stop(self) -> list[str]:
        """SIGTERM; the failures (a non-zero exit, no exit within 20 s)."""
        failures = []
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            failures.append("Bindery did not stop within 20 s of SIGTERM")
        if code != 0:
            tail = "".join(self.err[-40:])
            failures.append(f"Bindery exited {code} after SIGTERM; stderr tail:\n{tail}")
        return failures

    def panics(self) -> list[str]:
        return [line.rstrip() for line in self.err if "panicked" in line]


def _group(pattern: str, text: str):
    match = re.search(pattern, text)
    return match and match.group(1)


def segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# ---------------------------------------------------------------------------------------------
# Seed data
# ---------------------------------------------------------------------------------------------

# Identities that make path handling work: '@', '+', a space, non-ASCII, RTL text.
IDENTITIES = ["alice", "bob@example.com", "user+1@x.com", "a b", "émile", "שלום"]


# Credentials are read when created (CONTRACT §6.2): the test-only material of tests/fixtures.
FIXTURES = ROOT / "tests" / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def seed(app: Bindery) -> dict:
    """Creates the data the run hits; returns the dictionaries' values."""
    d = collections.defaultdict(list)
    service_account = fixture("test-only-service-account.json")
    for kind, extra in (("apn", [("Certificate", fixture("test-only-apns-certificate.pem")),
                                 ("PrivateKey", fixture("test-only-apns-certificate-key.pem")),
                                 ("Sandbox", "True")]),
                        ("fcm", [("Secret", service_account)]),
                        ("gcm", [("ApiKey", service_account)]),
                        ("apn", [("PrivateKey", fixture("test-only-apns-token-key.p8")), ("KeyId", "KEYID12345"),
                                 ("TeamId", "TEAMID1234"), ("Topic", "com.example.bindery.schemathesis")])):
        d["credentials"].append(app.must(201, "POST", "/v2/Credentials",
                                         [("Type", kind), ("FriendlyName", f"keep {kind}")] + extra)["sid"])
    for n in range(6):
        d["credentials_del"].append(
            app.must(201, "POST", "/v2/Credentials", [("Type", "fcm"), ("FriendlyName", f"del {n}"),
                                                     ("Secret", service_account)])["sid"])

    service = app.must(201, "POST", "/v2/Services", [("FriendlyName", "schemathesis")])["sid"]
    # Pushes go to the log transport; enabling every type lets Notify target real bindings.
    app.must(200, "POST", f"/v2/Services/{service}", [
        ("Notifications.NewMessage.Enabled", "true"),
        ("Notifications.AddedToChannel.Enabled", "true"),
        ("Notifications.InvitedToChannel.Enabled", "true"),
        ("Notifications.RemovedFromChannel.Enabled", "true"),
        ("Notifications.NewMessage.Template", "${USER}: ${MESSAGE}"),
    ])
    d["services"].append(service)

    for n, identity in enumerate(IDENTITIES):
        user = app.must(201, "POST", f"/v2/Services/{service}/Users",
                        [("Identity", identity), ("FriendlyName", f"User {n}"),
                         ("Attributes", json.dumps({"n": n}))])
        d["users"] += [user["sid"], identity]
        d["identities"].append(identity)
        for kind in ("apn", "fcm"):
            binding = app.must(201, "POST", f"/v2/Services/{service}/Users/{user['sid']}/Bindings",
                               [("BindingType", kind), ("Address", f"token-{kind}-{n}"),
                                ("CredentialSid", d["credentials"][0 if kind == "apn" else 1])])
            d["bindings"].append(binding["sid"])
            d["user_bindings"].append((user["sid"], identity, binding["sid"]))

    # Users kept for DeleteUser; a user whose bindings are kept for the binding DELETEs.
    for n in range(8):
        identity = f"victim-{n}"
        user = app.must(201, "POST", f"/v2/Services/{service}/Users", [("Identity", identity)])
        app.must(201, "POST", f"/v2/Services/{service}/Users/{identity}/Bindings",
                 [("BindingType", "gcm"), ("Address", f"victim-token-{n}")])
        d["users_del"] += [user["sid"], identity]
    carol = app.must(201, "POST", f"/v2/Services/{service}/Users", [("Identity", "carol")])["sid"]
    d["carol"] = [carol, "carol"]
    for n in range(12):
        binding = app.must(201, "POST", f"/v2/Services/{service}/Users/{carol}/Bindings",
                           [("BindingType", "apn"), ("Endpoint", f"carol-device-{n}"),
                            ("Address", f"carol-token-{n}")])
        d["bindings_del"].append(binding["sid"])

    # Services kept for DeleteService, each with a user and a binding so the cascade runs.
    for n in range(6):
        other = app.must(201, "POST", "/v2/Services", [("FriendlyName", f"doomed {n}")])["sid"]
        app.must(201, "POST", f"/v2/Services/{other}/Users/doomed-user/Bindings",
                 [("BindingType", "apn"), ("Address", f"doomed-token-{n}")])
        d["services_del"].append(other)

    # Valid page tokens: a page after / before a real item of each list.
    d["page_tokens"] = [f"PA{d['bindings'][0]}", f"PB{d['bindings'][-1]}", f"PA{d['users'][0]}",
                        f"PA{service}", f"PA{d['credentials'][0]}", "PA1", "PB1"]
    # Make sure the seeded data reads back (and give the change feed something to say).
    app.must(200, "GET", f"/v2/Services/{service}/Users/{segment(IDENTITIES[1])}")
    return d


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def toml_string(value: str) -> str:
    # A JSON string is a TOML basic string for BMP text (which is all the seeds use).
    return json.dumps(value, ensure_ascii=False)


def operation_parameters(method: str, path: str) -> dict[str, str]:
    """Which dictionary feeds each parameter of the operation (`location.name` keys)."""
    delete = method == "DELETE"
    p: dict[str, str] = {}
    if path.startswith("/v2/Credentials/{Sid}"):
        p["path.Sid"] = "credentials_del" if delete else "credentials"
    elif path == "/v2/Services/{Sid}":
        p["path.Sid"] = "services_del" if delete else "services"
    if "{ServiceSid}" in path:
        p["path.ServiceSid"] = "services"
    if path.endswith("/Users/{Sid}"):
        p["path.Sid"] = "users_del" if delete else "users"
    if "{UserSid}" in path:
        p["path.UserSid"] = "carol" if delete else "users"
    if re.search(r"/Bindings/\{Sid\}", path):
        if delete:
            p["path.Sid"] = "bindings_del"
        elif path.endswith("/History"):
            p["path.Sid"] = "bindings_all"
        else:
            p["path.Sid"] = "bindings"
    if path.endswith("/Notifications"):
        p["body.Identity[*]"] = "identities"
    if path.endswith("/Users/{UserSid}/Bindings") and method == "POST":
        p["body.CredentialSid"] = "credentials"
    return p


def write_config(directory: Path, document: dict, d: dict) -> Path:
    dictionaries = {
        "credentials": d["credentials"],
        "credentials_del": d["credentials_del"],
        "services": d["services"],
        "services_del": d["services_del"],
        "users": d["users"],
        "users_del": d["users_del"],
        "carol": d["carol"],
        "identities": d["identities"],
        "bindings": d["bindings"],
        "bindings_del": d["bindings_del"],
        "bindings_all": d["bindings"] + d["bindings_del"],
        "page_tokens": d["page_tokens"],
    }
    lines = [
        "# Written by tests/schemathesis/run.py for one run; see that file.",
        "[generation]",
        "database = \"none\"",
        "",
        "# Every check the document can support, on every operation; status_code_conformance is",
        "# switched on below only where the operation lists its error responses.",
        "[checks]",
        "enabled = false",
        "not_a_server_error.enabled = true",
        "response_schema_conformance.enabled = true",
        "content_type_conformance.enabled = true",
        "",
        "# The dictionaries below give the fuzzing phase real SIDs; values learnt from responses",
        "# would replace them for the Users/{Sid} operations with a pool so small that Hypothesis",
        "# stops after one or two cases there.",
        "[phases.fuzzing.extra-data-sources]",
        "responses = false",
        "",
        "[output.sanitization]",
        "# The credentials are a throwaway server's; the reproduction lines must be exact.",
        "enabled = false",
        "",
    ]
    for name, values in dictionaries.items():
        lines.append(f"[dictionaries.{name}]")
        lines.append("values = [" + ", ".join(toml_string(v) for v in values) + "]")
        lines.append("")
    for path, item in sorted(document["paths"].items()):
        for method, operation in sorted(item.items()):
            if method not in ("get", "post", "delete"):
                continue
            params = operation_parameters(method.upper(), path)
            if any(p.get("name") == "PageToken" for p in operation.get("parameters", [])):
                params["query.PageToken"] = "page_tokens"
            documented = {code for code in operation.get("responses", {}) if code[0] in "45"}
            if not params and not documented and path != "/v2/Events":
                continue
            lines.append("[[operations]]")
            lines.append(f"include-operation-id = {toml_string(operation['operationId'])}")
            if path == "/v2/Events":
                # A long-poll holds a request up to 30 s.
                lines.append("request-timeout = 40")
            if documented:
                # This operation documents its errors: every status it answers must be listed.
                lines.append("checks.status_code_conformance.enabled = true")
            if params:
                lines.append("[operations.parameters]")
                for key, dictionary in params.items():
                    probability = 0.5 if key == "query.PageToken" else REAL
                    lines.append(f"{toml_string(key)} = {{ dictionary = {toml_string(dictionary)}, "
                                 f"probability = {probability} }}")
            lines.append("")
    path = directory / "schemathesis.toml"
    path.write_text("\n".join(lines))
    return path


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def summarize(report_dir: Path, document: dict) -> tuple[int, list[str]]:
    """(requests sent, 5xx exchanges) from the NDJSON report, with a table per operation."""
    files = sorted(report_dir.glob("*.ndjson"))
    if not files:
        return 0, ["no NDJSON report was written"]
    per_operation: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    phases: collections.Counter = collections.Counter()
    server_errors: list[str] = []
    total = 0
    for line in files[-1].open(encoding="utf-8"):
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        for interaction in (recorder.get("interactions") or {}).values():
            total += 1
            phases[finished.get("phase")] += 1
            response = interaction.get("response")
            status = response["status_code"] if response else "no answer"
            label = recorder.get("label", "?")
            per_operation[label][status] += 1
            if isinstance(status, int) and status >= 500:
                request = interaction["request"]
                body = base64.b64decode((response.get("content") or {}).get("$base64", "")).decode(
                    "utf-8", "replace")
                server_errors.append(f"{request['method']} {request['uri']} -> {status} {body[:300]}")
    print("\nRequests per operation and status:")
    for label in sorted(per_operation):
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(per_operation[label].items(), key=str))
        print(f"  {label}: {counts}")
    print(f"Requests per phase: {dict(phases)}")
    return total, server_errors


# ---------------------------------------------------------------------------------------------


def main() -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bindery-schemathesis-"))
    data_dir = workdir / "data"
    data_dir.mkdir()
    report_dir = workdir / "report"
    app = Bindery(data_dir)
    failures: list[str] = []
    try:
        log(f"Bindery on {app.base_url}, data dir {data_dir}")
        d = seed(app)
        with urllib.request.urlopen(app.base_url + "/openapi.json", timeout=30) as response:
            document = json.load(response)
        config = write_config(workdir, document, d)
        log(f"seeded {len(d['bindings']) + len(d['bindings_del'])} bindings, "
            f"{len(d['users']) // 2 + len(d['users_del']) // 2 + 1} users; config {config}")
        command = [
            SCHEMATHESIS, "--config-file", str(config), "--no-color", "run",
            f"{app.base_url}/openapi.json",
            "--auth", f"{app.account_sid}:{app.auth_token}",
            "--max-examples", str(MAX_EXAMPLES),
            "--workers", str(WORKERS),
            "--request-timeout", "10",
            "--report", "ndjson", "--report-dir", str(report_dir),
            "--suppress-health-check", "all",
        ]
        if SEED:
            command += ["--seed", SEED]
        command += sys.argv[1:]
        env = child_env()
        env["SCHEMATHESIS_HOOKS"] = "hooks"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        log("running: " + " ".join(c if not c.startswith(app.account_sid) else "AC…:…" for c in command))
        run_started = time.monotonic()
        code = subprocess.call(command, cwd=workdir, env=env)
        run_seconds = time.monotonic() - run_started
        total, server_errors = summarize(report_dir, document)
        log(f"schemathesis exited {code}: {total} requests in {run_seconds:.0f} s")
        if code != 0:
            failures.append(f"schemathesis exited {code} (see its report above)")
        if server_errors:
            failures.append("5xx answers:\n  " + "\n  ".join(server_errors[:20]))
        if total < 1000:
            failures.append(f"only {total} requests were made; the run is meant to make thousands")
    finally:
        failures += app.stop()
        failures += [f"Bindery logged: {line}" for line in app.panics()[:20]]
    done = subprocess.run([BINDERY_BIN, "verify", "--data-dir", str(data_dir)], capture_output=True,
                          text=True, env=child_env(), timeout=300)
    if done.returncode != 0:
        failures.append(f"`bindery verify` exited {done.returncode}:\n{done.stdout}{done.stderr}")
    else:
        log("bindery verify: ok")
    if KEEP or failures:
        log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"total {time.monotonic() - started:.0f} s")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
