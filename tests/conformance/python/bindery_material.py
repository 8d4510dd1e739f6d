"""Push-credential material Bindery accepts: it reads a credential's secrets when it is created
or updated (CONTRACT §6.2), so these tests send the test-only fixtures of tests/fixtures (see its
README: public keys of no real account)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

# APNs certificate auth: Apple's shape, the bundle id in the subject's UID.
APNS_CERTIFICATE = (FIXTURES / "test-only-apns-certificate.pem").read_text()
APNS_CERTIFICATE_KEY = (FIXTURES / "test-only-apns-certificate-key.pem").read_text()
APNS_BUNDLE_ID = "com.example.bindery.conformance"
_SERVICE_ACCOUNT = json.loads((FIXTURES / "test-only-service-account.json").read_text())


def service_account(project_id: str = _SERVICE_ACCOUNT["project_id"]) -> str:
    """The fixture's Firebase service-account JSON, for `project_id`."""
    return json.dumps(dict(_SERVICE_ACCOUNT, project_id=project_id,
                           client_email=f"push@{project_id}.iam.gserviceaccount.com"))


def base64_line(secret: str) -> str:
    """A line of a PEM's base64 (or of the PEM in a service account): what must never come back,
    however the text around it is encoded."""
    text = json.loads(secret)["private_key"] if secret.lstrip().startswith("{") else secret
    return next(line for line in text.splitlines() if len(line) >= 40 and "-" not in line)
