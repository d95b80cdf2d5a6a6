"""The published book, read in a real browser: offline, on a desktop and on a phone.

The book is built from the repository into a temporary folder, served from 127.0.0.1, and
every page of the TOC is opened in headless Chromium (Debian's chromium + chromium-driver,
driven by selenium). For every page: no console error, every formula typeset by MathJax
(served by the book itself), every image loaded, and no request to any other host. Then, at
a phone's width, the navigation button opens the chapter list; and search finds "attention".

Without a browser the whole module is skipped with one line saying how to get one
(`.ci/run` installs it).
"""

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sphinx_external_toc.parsing import parse_toc_yaml

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER) and os.environ.get("LLM_COURSE_REQUIRE_BROWSER"):
    raise RuntimeError("LLM_COURSE_REQUIRE_BROWSER is set (CI) but chromium or chromedriver is not installed")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "no browser: the book's browser tests need Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver; .ci/run installs them)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402  (only when a browser is there)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow  # builds the book and starts a browser: make test runs it

PAGES = sorted(parse_toc_yaml(ROOT / "_toc.yml"))  # "book/intro", "exercises/ch02/ch02_exercises", ...
PHONE_WIDTH, PHONE_HEIGHT = 390, 844
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The book, built from the repository as `make book` builds it."""
    out = tmp_path_factory.mktemp("book")
    build = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", "--warningiserror", "--keep-going",
         "--path-output", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert build.returncode == 0, f"the book does not build:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def server(site):
    """An HTTP server of the built book on 127.0.0.1; yields its base URL."""
    handler = partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no line per request in the test output
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1280,900",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, url: str) -> None:
    """Load ``url`` and wait until MathJax (if the page loads it) has typeset everything."""
    browser.get_log("browser"), browser.get_log("performance")  # forget the previous page's logs
    browser.get(url)
    browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const ready = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
        const start = Date.now();
        (function wait() {
            if (ready()) { MathJax.startup.promise.then(() => done(true), () => done(false)); }
            else if (!document.querySelector('script[src*="mathjax"]') || Date.now() - start > 30000) { done(false); }
            else { setTimeout(wait, 50); }
        })();"""
    )


def requested_urls(browser) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def page_problems(browser, url: str) -> list[str]:
    open_page(browser, url)
    problems = []
    for entry in browser.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"console error: {entry['message']}")
    for request in requested_urls(browser):
        parsed = urlparse(request)
        if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname not in LOCAL_HOSTS:
            problems.append(f"a request leaves the machine: {request}")
    maths = browser.execute_script(
        """const all = [...document.querySelectorAll('.math')];
        return [all.length, all.filter(m => m.querySelector('mjx-container') || m.tagName === 'MJX-CONTAINER').length];"""
    )
    if maths[0] != maths[1]:
        problems.append(f"{maths[0] - maths[1]} of {maths[0]} formulas are not typeset")
    text = browser.find_element(By.TAG_NAME, "body").text
    for raw in ("\\(", "\\["):
        if raw in text:
            problems.append(f"raw TeX {raw!r} in the text: {text[text.index(raw) : text.index(raw) + 60]!r}")
    broken = browser.execute_script(
        """return [...document.images].filter(i => !i.complete || i.naturalWidth === 0
               || i.getBoundingClientRect().width === 0 && i.offsetParent !== null).map(i => i.src);"""
    )
    problems += [f"image without a size: {src}" for src in broken]
    return problems


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_offline_with_maths_and_images_and_no_console_error(browser, server, page):
    problems = page_problems(browser, f"{server}{page}.html")
    assert not problems, f"{page}:\n" + "\n".join(problems)


def test_formulas_are_typeset_on_the_attention_chapter(browser, server):
    open_page(browser, f"{server}book/ch03_attention.html")
    typeset = browser.execute_script("return document.querySelectorAll('mjx-container').length")
    assert typeset >= 5, "chapter 3's formulas (softmax, scaled dot products) should be typeset by MathJax"


def test_the_built_html_loads_no_script_from_outside_the_book(site):
    outside = []
    for page in site.rglob("*.html"):
        for src in _script_sources(page.read_text(encoding="utf-8")):
            if urlparse(src).scheme or src.startswith("//"):
                outside.append(f"{page.relative_to(site)}: {src}")
    assert not outside, "\n".join(outside[:20])


def _script_sources(html: str) -> list[str]:
    import re

    return re.findall(r"<script[^>]*\ssrc=\"([^\"]+)\"", html)


def test_navigation_button_opens_the_chapter_list_on_a_phone(browser, server):
    browser.set_window_size(PHONE_WIDTH, PHONE_HEIGHT)
    try:
        open_page(browser, f"{server}book/ch03_attention.html")
        sidebar = browser.find_element(By.CSS_SELECTOR, ".bd-sidebar-primary")
        assert not _on_screen(browser, sidebar), "at a phone's width the chapter list starts hidden"
        button = browser.find_element(By.CSS_SELECTOR, "button.primary-toggle")
        assert button.is_displayed(), "the navigation button is visible on a phone"
        button.click()
        WebDriverWait(browser, 5).until(lambda _: _on_screen(browser, sidebar))
        links = [a.text for a in sidebar.find_elements(By.CSS_SELECTOR, "a") if a.is_displayed()]
        assert any("attention" in text.lower() for text in links), f"the chapter list shows the chapters: {links}"
    finally:
        browser.set_window_size(1280, 900)


def _on_screen(browser, element) -> bool:
    return browser.execute_script(
        """const r = arguments[0].getBoundingClientRect();
        const style = getComputedStyle(arguments[0]);
        return style.visibility !== 'hidden' && style.display !== 'none'
               && r.width > 100 && r.right > 0 && r.left < window.innerWidth - 10;""",
        element,
    )


def test_search_finds_attention(browser, server):
    open_page(browser, f"{server}search.html?q=attention")
    deadline = time.monotonic() + 30
    results = []
    while time.monotonic() < deadline and not results:
        results = browser.find_elements(By.CSS_SELECTOR, "#search-results li")
        time.sleep(0.2)
    titles = " ".join(result.text for result in results)
    assert results, "searching the book for 'attention' returns no result"
    assert "Attention" in titles or "attention" in titles
