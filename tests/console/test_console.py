"""The console in a real browser: headless chromium through chromium-driver, against a real
Bindery pushing to the APNs stand-in. Every page visited is screenshotted into
target/console-screenshots (the README shows two of them)."""

from __future__ import annotations

import http.server
import threading
import uuid

import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

import console_support as support


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def token(seed: str) -> str:
    return (uuid.uuid5(uuid.NAMESPACE_URL, seed).hex * 2)[:64]


def assert_labelled(browser) -> None:
    """Every input a person fills in has a label naming it."""
    for field in browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden])"):
        field_id = field.get_attribute("id")
        assert field_id, f"an input without an id: {field.get_attribute('outerHTML')}"
        labels = browser.find_elements(By.CSS_SELECTOR, f"label[for='{field_id}']")
        assert labels and labels[0].text.strip(), f"input #{field_id} has no label"


def sign_in(browser, server, user=None, password=None) -> None:
    """Signs in from the sign-in page with the keyboard alone: type, Tab, type, Enter."""
    browser.get(server.base_url + "/console")
    assert browser.current_url.endswith("/console/sign-in"), browser.current_url
    assert_labelled(browser)
    username = browser.find_element(By.ID, "username")
    username.click()
    username.send_keys(user or server.account_sid, Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "password", "Tab moves from the SID to the secret"
    focused.send_keys(password or server.auth_token, Keys.ENTER)
    WebDriverWait(browser, 10).until(
        lambda b: not b.current_url.endswith("/sign-in") or b.find_elements(By.CSS_SELECTOR, "[role=alert]"),
        "the sign-in to answer",
    )


def wait_for_url(browser, suffix: str) -> None:
    """Waits for the navigation a click started to land on a URL ending with `suffix`."""
    WebDriverWait(browser, 10).until(lambda b: b.current_url.endswith(suffix), f"at {suffix}")


def found_now(browser, selector: str):
    """The elements `selector` finds on the page as it is, without waiting for one to come."""
    browser.implicitly_wait(0)
    try:
        return browser.find_elements(By.CSS_SELECTOR, selector)
    finally:
        browser.implicitly_wait(5)


def heading(browser) -> str:
    return browser.find_element(By.TAG_NAME, "h1").text


def expect_heading(browser, text: str, why: str = "") -> None:
    """Waits for the page headed `text`: a key press or a click that submits a form starts a
    navigation that WebDriver does not wait for, and until it lands the old page shows."""
    def headed(b):
        try:
            return heading(b) == text
        except StaleElementReferenceException:
            return False
    try:
        WebDriverWait(browser, 10).until(headed)
    except TimeoutException:
        raise AssertionError(f"{why} expected the page {text!r}, at {browser.current_url}: {heading(browser)!r}")


def open_user(browser, identity: str) -> None:
    """From the services page: the service, then the user found by identity."""
    browser.find_element(By.LINK_TEXT, "chat-app").click()
    expect_heading(browser, "chat-app")
    assert_labelled(browser)
    field = browser.find_element(By.ID, "identity")
    field.send_keys(identity, Keys.ENTER)
    expect_heading(browser, identity)


def device_card(browser, endpoint: str):
    return browser.find_element(By.CSS_SELECTOR, f"article.device[aria-label='Device {endpoint}']")


def timeline(browser) -> str:
    return browser.find_element(By.CSS_SELECTOR, "ol.timeline").text


def test_signed_out_every_console_url_leads_to_the_sign_in_page_and_shows_nothing(browser, server, registry, shoot):
    service = registry["service"]["sid"]
    for path in ["/console", "/console/services", f"/console/services/{service}",
                 f"/console/services/{service}/users/alice", f"/console/services/{service}/failures",
                 "/console/credentials", "/console/nowhere"]:
        browser.get(server.base_url + path)
        assert browser.current_url.endswith("/console/sign-in"), path
        for secret in ("chat-app", "alice", service, "ios-app"):
            assert secret not in browser.page_source, (path, secret)
    expect_heading(browser, "Sign in")
    assert_labelled(browser)
    shoot("sign-in")


def test_wrong_credentials_are_refused_and_show_nothing(browser, server, registry):
    sign_in(browser, server, password="0" * 32)
    expect_heading(browser, "Sign in")
    assert "do not sign in" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "chat-app" not in browser.page_source
    browser.get(server.base_url + "/console/services")
    assert browser.current_url.endswith("/console/sign-in")


def test_finding_a_user_shows_a_device_that_moved_to_another_user(browser, server, registry, shoot):
    carol, dave = unique("carol"), unique("dave")
    address = token(carol)
    registry["register"](carol, "carol-phone", address)
    registry["register"](dave, "dave-phone", address)
    sign_in(browser, server)
    expect_heading(browser, "Services")
    shoot("services")
    browser.find_element(By.LINK_TEXT, "chat-app").click()
    expect_heading(browser, "chat-app")
    assert carol in browser.find_element(By.TAG_NAME, "table").text, "the service's users"
    shoot("service")
    browser.find_element(By.LINK_TEXT, "Services").click()
    open_user(browser, carol)
    assert "No devices" in browser.find_element(By.TAG_NAME, "main").text
    history = timeline(browser)
    assert f"Moved to {dave}'s device “dave-phone”" in history, history
    assert "A device registered for Apple (APNs) pushes, endpoint “carol-phone”" in history
    shoot("user-moved")

    # An identity that never was: said so, with the form to try again.
    browser.find_element(By.LINK_TEXT, "chat-app").click()
    browser.find_element(By.ID, "identity").send_keys("nobody-" + carol, Keys.ENTER)
    expect_heading(browser, "No such user")
    assert browser.find_element(By.ID, "identity").get_attribute("value") == "nobody-" + carol
    shoot("no-such-user")


def test_a_test_push_to_one_device_is_delivered_and_shown(browser, server, registry, shoot):
    sign_in(browser, server)
    open_user(browser, "alice")
    card = device_card(browser, "alice-iphone")
    assert registry["phone"]["sid"] in card.text
    assert "ios-app" in card.text, "the device's credential, by name"
    card.find_element(By.TAG_NAME, "button").click()
    notice = browser.find_element(By.CSS_SELECTOR, "section.notice")
    assert "Outcome: delivered" in notice.text, notice.text
    latest = device_card(browser, "alice-iphone").find_element(By.CSS_SELECTOR, ".outcome")
    assert latest.text == "delivered"
    shoot("test-push-delivered")
    shoot("test-push-delivered-phone", phone=True)


def test_a_device_the_provider_rejects_is_removed_and_its_history_says_why(browser, server, registry, shoot):
    sign_in(browser, server)
    open_user(browser, "alice")
    device_card(browser, "alice-ipad").find_element(By.TAG_NAME, "button").click()
    notice = browser.find_element(By.CSS_SELECTOR, "section.notice")
    assert "Outcome: unregistered" in notice.text, notice.text
    assert "BadDeviceToken" in notice.text
    assert not found_now(browser, "article.device[aria-label='Device alice-ipad']")
    history = timeline(browser)
    assert "Apple said the token is no longer valid (BadDeviceToken" in history, history
    shoot("user-rejected")

    browser.find_element(By.LINK_TEXT, "chat-app").click()
    browser.find_element(By.PARTIAL_LINK_TEXT, "Recent failed deliveries").click()
    expect_heading(browser, "Failures")
    rejected = browser.find_element(By.TAG_NAME, "main").text
    assert "alice · alice-ipad" in rejected, rejected
    assert "BadDeviceToken" in rejected
    shoot("failures")


def test_a_push_that_fails_keeps_the_device_and_is_listed_among_the_failures(browser, server, registry, shoot):
    grace = unique("grace")
    registry["register"](grace, "grace-tablet", support.FAILING_TOKEN, registry["watch"])
    sign_in(browser, server)
    open_user(browser, grace)
    device_card(browser, "grace-tablet").find_element(By.TAG_NAME, "button").click()
    notice = browser.find_element(By.CSS_SELECTOR, "section.notice")
    assert "Outcome: failed" in notice.text, notice.text
    assert "DeviceTokenNotForTopic: the token belongs to another app" in notice.text
    card = device_card(browser, "grace-tablet")
    assert card.find_element(By.CSS_SELECTOR, ".outcome").text == "failed"

    browser.find_element(By.LINK_TEXT, "chat-app").click()
    browser.find_element(By.PARTIAL_LINK_TEXT, "Recent failed deliveries").click()
    failed = browser.find_element(By.XPATH, f"//tr[td[contains(., '{grace}')]]").text
    assert "grace-tablet" in failed and "DeviceTokenNotForTopic" in failed and "HTTP 400" in failed, failed
    browser.find_element(By.LINK_TEXT, grace).click()
    expect_heading(browser, grace)

    # Apple blamed the credential (its topic): the credentials page says so.
    browser.find_element(By.LINK_TEXT, "Credentials").click()
    row = browser.find_element(By.XPATH, "//tr[td[contains(., 'watch-app')]]").text
    assert "refused by Apple: DeviceTokenNotForTopic" in row, row


def test_credentials_show_their_kind_topic_expiry_and_health(browser, server, registry, standin, shoot):
    sign_in(browser, server)
    browser.find_element(By.LINK_TEXT, "Credentials").click()
    expect_heading(browser, "Credentials")
    row = browser.find_element(By.XPATH, "//tr[td[contains(., 'ios-app')]]").text
    assert "Apple (APNs) token key (.p8)" in row, row
    assert standin.described["topic"] in row
    assert "does not expire" in row
    assert "healthy" in row
    shoot("credentials")


def test_sign_out_ends_the_session_even_for_a_copy_of_its_cookie(browser, server, registry):
    sign_in(browser, server)
    cookie = browser.get_cookie("bindery_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    browser.find_element(By.CSS_SELECTOR, "form.sign-out button").click()
    wait_for_url(browser, "/console/sign-in?signed_out=1")
    assert "You are signed out." in browser.page_source
    browser.get(server.base_url + "/console/services")
    assert browser.current_url.endswith("/console/sign-in")
    # The same token again: the session it named has ended on the server.
    browser.add_cookie({"name": "bindery_console", "value": cookie["value"], "path": "/console"})
    browser.get(server.base_url + "/console/services")
    assert browser.current_url.endswith("/console/sign-in")
    assert "chat-app" not in browser.page_source


def test_another_accounts_console_shows_none_of_this_ones(browser, server, registry):
    other = server.cli("accounts", "create")
    sign_in(browser, server, other["account_sid"], other["auth_token"])
    expect_heading(browser, "Services")
    assert "no services" in browser.find_element(By.TAG_NAME, "main").text
    service = registry["service"]["sid"]
    for path in [f"/console/services/{service}", f"/console/services/{service}/users/alice",
                 f"/console/services/{service}/failures"]:
        browser.get(server.base_url + path)
        expect_heading(browser, "Not found", str(path))
        for secret in ("chat-app", "alice-iphone", registry["phone"]["sid"]):
            assert secret not in browser.page_source, (path, secret)
    browser.get(server.base_url + "/console/credentials")
    assert "ios-app" not in browser.page_source


def test_an_api_key_signs_in_and_its_revocation_ends_the_session(browser, server, registry):
    key = server.cli("keys", "create", "--account", server.account_sid)
    sign_in(browser, server, key["sid"], key["secret"])
    assert "chat-app" in browser.page_source
    server.cli("keys", "revoke", key["sid"])
    browser.get(server.base_url + "/console/services")
    assert browser.current_url.endswith("/console/sign-in")
    assert "chat-app" not in browser.page_source


class _Forms(http.server.BaseHTTPRequestHandler):
    """Another origin (same host, another port): a page whose forms post to the console."""
    target = ""

    def do_GET(self):
        body = f"""<!doctype html><html><body>
        <form id="out" method="post" action="{self.target}/console/sign-out">
          <input type="hidden" name="csrf" value="guessed"><button id="sign-out">Win a prize</button></form>
        <form id="push" method="post" action="{self.target}{self.path}">
          <input type="hidden" name="csrf" value="guessed"><button id="push-it">Another prize</button></form>
        </body></html>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def other_origin(server):
    _Forms.target = server.base_url
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forms)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_forms_posted_from_another_origin_are_refused(browser, server, registry, other_origin):
    service = registry["service"]["sid"]
    erin = unique("erin")
    binding = registry["register"](erin, "erin-phone", token(erin))["sid"]
    test_push = f"/console/services/{service}/users/{erin}/bindings/{binding}/test-push"
    sign_in(browser, server)
    expect_heading(browser, "Services")

    browser.get(other_origin + test_push)
    browser.find_element(By.ID, "push-it").click()
    expect_heading(browser, "Refused")
    browser.get(other_origin + test_push)
    browser.find_element(By.ID, "sign-out").click()
    expect_heading(browser, "Refused")

    # Still signed in, and nothing was pushed.
    browser.get(f"{server.base_url}/console/services/{service}/users/{erin}")
    expect_heading(browser, erin)
    assert "none yet" in device_card(browser, "erin-phone").text
