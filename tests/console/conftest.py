"""Fixtures of the console's browser suite: one APNs stand-in and one Bindery for the whole
run, a registry set up through the API, and a fresh headless chromium per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import console_support as support

SCREENSHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS") or support.ROOT / "target" / "console-screenshots")


@pytest.fixture(scope="session")
def scratch():
    directory = Path(tempfile.mkdtemp(prefix="bindery-console-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def standin(scratch):
    directory = scratch / "standin"
    directory.mkdir()
    running = support.start_standin(directory)
    yield running
    support.stop(running.proc)


@pytest.fixture(scope="session")
def server(scratch, standin):
    data_dir = scratch / "data"
    data_dir.mkdir()
    running = support.start_bindery(data_dir, standin)
    yield running
    assert support.stop(running.proc) == 0, "".join(running.stderr[-40:])


@pytest.fixture(scope="session")
def registry(server, standin):
    """A service that sends new-message pushes, an APNs credential through the stand-in, and
    alice with two devices (one whose token the stand-in rejects), bob with none yet."""
    described = standin.described
    apns_credential = lambda name: server.api("POST", "/v2/Credentials", {
        "Type": "apn",
        "FriendlyName": name,
        "PrivateKey": Path(described["apns_key_file"]).read_text(),
        "KeyId": described["apns_key_id"],
        "TeamId": described["apns_team_id"],
        "Topic": described["topic"],
        "Sandbox": "false",
    })
    credential = apns_credential("ios-app")
    # The one the failing push blames (its topic, says the stand-in), so that ios-app's
    # health does not depend on the order the tests run in.
    watch = apns_credential("watch-app")
    service = server.api("POST", "/v2/Services", {"FriendlyName": "chat-app"})
    # Twilio's create takes only a name; notifications are turned on by an update.
    server.api("POST", f"/v2/Services/{service['sid']}", {"Notifications.NewMessage.Enabled": "true"})
    register = lambda identity, endpoint, token, through=credential: server.api(
        "POST", f"/v2/Services/{service['sid']}/Users/{identity}/Bindings",
        {"BindingType": "apn", "Address": token, "Endpoint": endpoint, "CredentialSid": through["sid"]},
    )
    phone = register("alice", "alice-iphone", support.GOOD_TOKEN)
    rejected = register("alice", "alice-ipad", support.REJECTED_TOKEN)
    return {
        "service": service,
        "credential": credential,
        "watch": watch,
        "phone": phone,
        "rejected": rejected,
        "register": register,
    }


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    driver.set_page_load_timeout(30)
    # A click that navigates is waited for by chromedriver; this covers what it does not.
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


@pytest.fixture
def shoot(browser):
    """Saves a screenshot of the page the browser shows, under `name`.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(name: str, phone: bool = False) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        if phone:
            browser.set_window_size(390, 900)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        width = 390 if phone else 1280
        browser.set_window_size(width, max(600, min(int(height) + 40, 2400)))
        browser.save_screenshot(str(path))
        browser.set_window_size(1280, 1000)
        return path

    return save
