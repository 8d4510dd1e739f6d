"""Running Bindery (direct delivery to the APNs stand-in) and the stand-in for the console's
browser suite, and the few API calls that set up what the pages show."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
BINDERY_BIN = os.environ.get("BINDERY_BIN") or str(ROOT / "target" / "debug" / "bindery")
STANDIN_BIN = os.environ.get("BINDERY_STANDIN_BIN") or str(ROOT / "target" / "debug" / "bindery-standin")
START_TIMEOUT = 30.0

# Device tokens (64 hex digits, as APNs has them). The stand-in answers BadDeviceToken for
# REJECTED (the device is removed), DeviceTokenNotForTopic for FAILING (the push fails, the
# device is kept), and accepts every other.
GOOD_TOKEN = "a1" * 32
REJECTED_TOKEN = "b2" * 32
FAILING_TOKEN = "c3" * 32


def child_env(extra: Dict[str, str]) -> Dict[str, str]:
    """The caller's environment minus BINDERY_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_")}
    env.update(extra)
    return env


def _drain(stream, sink: List[str], wake: threading.Event) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        wake.set()
    wake.set()


def _spawn(args: List[str], env: Dict[str, str]):
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
    )
    out: List[str] = []
    err: List[str] = []
    wake = threading.Event()
    for stream, sink in ((proc.stdout, out), (proc.stderr, err)):
        threading.Thread(target=_drain, args=(stream, sink, wake), daemon=True).start()
    return proc, out, err, wake


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@dataclass
class Standin:
    proc: subprocess.Popen
    described: Dict[str, str]


def start_standin(directory: Path) -> Standin:
    proc, out, err, wake = _spawn(
        [STANDIN_BIN, "--dir", str(directory),
         "--apns-answer", f"{REJECTED_TOKEN}=bad-device-token",
         "--apns-answer", f"{FAILING_TOKEN}=not-for-topic"],
        child_env({}),
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and not out and proc.poll() is None:
        wake.wait(0.2)
        wake.clear()
    if not out:
        proc.kill()
        raise RuntimeError(f"the stand-in did not start: {''.join(err)}")
    return Standin(proc, json.loads(out[0]))


@dataclass
class Bindery:
    proc: subprocess.Popen
    data_dir: Path
    base_url: str
    account_sid: str
    auth_token: str
    stderr: List[str] = field(default_factory=list)

    def cli(self, *args: str) -> Dict[str, str]:
        done = subprocess.run(
            [BINDERY_BIN, *args, "--data-dir", str(self.data_dir)],
            capture_output=True, text=True, timeout=60, env=child_env({}), stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"bindery {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else {}

    def api(self, method: str, path: str, form: Optional[Dict] = None,
            user: Optional[str] = None, password: Optional[str] = None) -> Dict:
        """One API call as the first account (or `user`), answering its JSON body."""
        data = urllib.parse.urlencode(form or {}, doseq=True).encode() if form is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        credentials = f"{user or self.account_sid}:{password or self.auth_token}"
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read().decode()}") from None
        return json.loads(body) if body else {}


def start_bindery(data_dir: Path, standin: Standin, extra: Optional[Dict[str, str]] = None) -> Bindery:
    env = child_env({
        "BINDERY_DELIVERY__TRANSPORT": "direct",
        "BINDERY_DELIVERY__APNS__ENDPOINT": standin.described["apns_url"],
        "BINDERY_DELIVERY__APNS__SANDBOX_ENDPOINT": standin.described["apns_url"],
        "BINDERY_DELIVERY__FCM__ENDPOINT": standin.described["fcm_url"],
        "BINDERY_DELIVERY__TLS__CA_FILE": standin.described["ca_file"],
        **(extra or {}),
    })
    proc, _, err, wake = _spawn(
        [BINDERY_BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)], env
    )
    deadline = time.monotonic() + START_TIMEOUT
    port = None
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", "".join(err))
        if m:
            port = m.group(1)
            break
        wake.wait(0.2)
        wake.clear()
    if not port:
        proc.kill()
        raise RuntimeError(f"Bindery did not start: {''.join(err)}")
    account = json.loads((data_dir / "first-account.json").read_text())
    return Bindery(proc, data_dir, f"http://127.0.0.1:{port}", account["account_sid"], account["auth_token"], err)
