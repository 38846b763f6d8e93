"""The web page at / in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`, installed by
.ci/run) driven by Selenium against a real `nmt serve` with the tiny model.

Without the browser the tests are skipped on a developer's machine and fail in CI (CI=true), so they cannot vanish.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests
from conftest import REPO, run_nmt
from server_process import ServerProcess

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SENTENCE = "Ein Mann fährt Fahrrad."
KEY = "page-K3y"

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        pytest.fail("chromium and chromedriver are missing (.ci/run installs them)", pytrace=False)
    pytest.skip(
        "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # drives headless Chromium against a running `nmt serve`


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument("--window-size=1100,760")
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))  # the system driver: nothing downloaded
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _server(model: Path, log: Path, *options: str, key: str | None = None) -> ServerProcess:
    headers = {"X-API-Key": key} if key else {}  # for the health probe
    return ServerProcess.ready(model, log, "--threads", "1", "--batch-timeout", "0.002", *options, headers=headers)


@pytest.fixture(scope="module")
def open_server(tiny_run, tmp_path_factory):
    server = _server(tiny_run, tmp_path_factory.mktemp("page") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expected(tiny_run) -> str:
    """What `nmt translate` prints for SENTENCE (the server's default beam is the config's, as here)."""
    return run_nmt("translate", "--model", tiny_run, input=SENTENCE + "\n").stdout.strip()


def wait(driver, condition, timeout: float = 30):
    return WebDriverWait(driver, timeout).until(condition)


def _ready(driver) -> None:
    wait(driver, lambda d: d.find_element(By.ID, "target").find_elements(By.TAG_NAME, "option"))


def _translate(driver, text: str) -> None:
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    driver.execute_script("document.getElementById('result').textContent = ''")
    driver.find_element(By.ID, "translate").click()


def _result(driver) -> str:
    wait(driver, lambda d: d.find_element(By.ID, "result").text or d.find_element(By.ID, "error").is_displayed())
    error = driver.find_element(By.ID, "error")
    assert not error.is_displayed(), error.text
    return driver.find_element(By.ID, "result").text


def _error(driver) -> str:
    wait(driver, ec.visibility_of_element_located((By.ID, "error")))
    return driver.find_element(By.ID, "error").text


def test_page_translates_like_nmt_translate(browser, open_server, expected, tmp_path):
    browser.set_window_size(1100, 760)
    browser.get(open_server.url + "/")
    _ready(browser)
    assert Select(browser.find_element(By.ID, "source")).first_selected_option.get_attribute("value") == "de"
    assert Select(browser.find_element(By.ID, "target")).first_selected_option.get_attribute("value") == "en"
    assert not browser.find_element(By.ID, "key-box").is_displayed()  # the server has no key
    assert not browser.find_element(By.ID, "swap").is_enabled()  # en->de is not served
    _translate(browser, SENTENCE)
    assert _result(browser) == expected

    # every asset came from the server itself
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(url.startswith(open_server.url + "/") for url in urls), urls

    Select(browser.find_element(By.ID, "alternatives")).select_by_value("2")
    _translate(browser, SENTENCE)
    assert _result(browser) == expected  # the best hypothesis stays first
    alternatives = browser.find_elements(By.CSS_SELECTOR, "#alternatives-list li")
    assert len(alternatives) == 2 and all(a.text for a in alternatives)

    screenshot = tmp_path / "web_page.png"
    browser.save_screenshot(str(screenshot))
    if os.environ.get("NMT_UPDATE_SCREENSHOT"):  # how docs/web_page.png is made
        shutil.copy(screenshot, REPO / "docs" / "web_page.png")
    browser.find_element(By.ID, "copy").click()
    wait(browser, lambda d: d.find_element(By.ID, "copy").text == "Copied")
    Select(browser.find_element(By.ID, "alternatives")).select_by_value("0")


def test_page_fits_a_phone_screen(browser, open_server, expected):
    browser.set_window_size(390, 844)
    try:
        browser.get(open_server.url + "/")
        _ready(browser)
        _translate(browser, SENTENCE)
        assert _result(browser) == expected
        width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"horizontal scrolling on a phone: {width}"
        text, result = browser.find_element(By.ID, "text"), browser.find_element(By.ID, "result")
        assert result.location["y"] > text.location["y"]  # stacked, not side by side
    finally:
        browser.set_window_size(1100, 760)


def test_page_translates_a_file(browser, open_server, expected, tmp_path):
    """The file box (shown because /frontend/settings offers files): a .txt goes to /translate_file, the link
    downloads its translation; a file that is not its format is a readable error."""
    browser.get(open_server.url + "/")
    _ready(browser)
    wait(browser, ec.visibility_of_element_located((By.ID, "files-box")))
    assert ".docx" in browser.find_element(By.ID, "file").get_attribute("accept")
    (tmp_path / "note.txt").write_text(SENTENCE, encoding="utf-8")
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "note.txt"))
    browser.find_element(By.ID, "translate-file").click()
    wait(browser, ec.visibility_of_element_located((By.ID, "file-link")))
    link = browser.find_element(By.ID, "file-link")
    assert link.get_attribute("download") == "note.txt"
    assert requests.get(link.get_attribute("href"), timeout=10).text == expected
    (tmp_path / "fake.docx").write_text(SENTENCE, encoding="utf-8")
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "fake.docx"))
    browser.find_element(By.ID, "translate-file").click()
    assert "not a .docx file" in _error(browser)


def test_page_shows_errors_as_sentences(browser, tiny_run, tmp_path):
    """400/422 (a text over --max-chars), 413 (a body over --max-body-bytes) and 504 (--timeout) as readable text
    (the 429 is in test_page_asks_for_the_key)."""
    options = ["--max-chars", "300", "--max-body-bytes", "4000", "--timeout", "0.01"]
    server = _server(tiny_run, tmp_path / "server.log", *options)
    try:
        browser.get(server.url + "/")
        _ready(browser)
        _translate(browser, "Hund " * 80)
        message = _error(browser)  # LibreTranslate's 400 on /translate (the page's route when the server has it)
        assert "could not translate this: Invalid request: request (400) exceeds text limit (300)" in message
        _translate(browser, "Hund " * 1000)
        assert "too long for this server" in _error(browser)
        _translate(browser, "Ein Mann fährt Fahrrad und zwei Hunde spielen im Schnee " * 5)
        assert "gave no answer within its time limit" in _error(browser)
    finally:
        server.stop()


def test_page_asks_for_the_key(browser, tiny_run, tmp_path, expected):
    """A server with keys: the page asks for one, a wrong one is refused, the right one translates; over the
    key's requests per minute the page says when to try again."""
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY} requests_per_minute=2\n", encoding="utf-8")
    server = _server(tiny_run, tmp_path / "server.log", "--keys", str(keys), key=KEY)
    try:
        browser.get(server.url + "/")
        wait(browser, ec.visibility_of_element_located((By.ID, "key-box")))
        assert "needs an API key" in _error(browser)
        key_input = browser.find_element(By.ID, "api-key")
        key_input.send_keys("wrong")
        browser.find_element(By.ID, "key-save").click()
        wait(browser, lambda d: "did not accept" in d.find_element(By.ID, "error").text)
        key_input.clear()
        key_input.send_keys(KEY)
        browser.find_element(By.ID, "key-save").click()
        _ready(browser)
        _translate(browser, SENTENCE)
        assert _result(browser) == expected
        _translate(browser, SENTENCE)
        assert _result(browser) == expected
        _translate(browser, SENTENCE)
        message = _error(browser)
        assert "Too many requests for this API key: try again in" in message
    finally:
        server.stop()
        browser.execute_script("sessionStorage.clear()")
    assert KEY not in server.log()


def test_page_swaps_and_detects_with_two_pairs(browser, lt_server, tiny_run_en_de, expected):
    """Two models (de-en, en-de): swap turns the direction around and moves the translation to the input;
    "Detect language" finds the source."""
    browser.get(lt_server.url + "/")
    _ready(browser)
    source, target = Select(browser.find_element(By.ID, "source")), Select(browser.find_element(By.ID, "target"))
    assert [o.get_attribute("value") for o in source.options] == ["auto", "de", "en"]
    source.select_by_value("de")
    assert [o.get_attribute("value") for o in target.options] == ["en"]
    _translate(browser, SENTENCE)
    assert _result(browser) == expected
    swap = browser.find_element(By.ID, "swap")
    assert swap.is_enabled()
    swap.click()
    assert source.first_selected_option.get_attribute("value") == "en"
    assert target.first_selected_option.get_attribute("value") == "de"
    assert browser.find_element(By.ID, "text").get_attribute("value") == expected
    browser.find_element(By.ID, "translate").click()
    back = run_nmt("translate", "--model", tiny_run_en_de, input=expected + "\n").stdout.strip()
    assert _result(browser) == back

    source.select_by_value("auto")
    assert not swap.is_enabled()
    target.select_by_value("en")
    _translate(browser, "Ein Mann fährt Fahrrad und zwei Hunde spielen im Schnee.")
    assert _result(browser)
    assert browser.find_element(By.ID, "detected").text.startswith("detected: German")
