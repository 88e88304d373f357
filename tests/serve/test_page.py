"""GET / in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium): pick a
sample image, read the label the page shows."""

import shutil
from pathlib import Path

import pytest

from ..server import Server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver; .ci/run installs them)",
)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        opts.add_argument(flag)
    with pytest.MonkeyPatch.context() as env:  # for selenium only: a server's environment is the tests' own
        env.setenv("SE_OFFLINE", "true")  # selenium must not try to download a driver
        driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def test_the_page_classifies_a_sample(repo, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    srv = Server(repo)
    try:
        browser.get(srv.url + "/")
        assert browser.title == "prelu-deploy"
        assert [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#model option")] == ["digits"]
        assert {a.get_attribute("href").rsplit("/", 1)[-1] for a in browser.find_elements(By.CSS_SELECTOR, "nav a")} >= {
            "docs",
            "metrics",
        }
        for digit in ("3", "7"):
            browser.find_element(By.ID, "files").send_keys(str(ROOT / "models" / "samples" / f"digit_{digit}.png"))
            label = WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#results .label")))
            WebDriverWait(browser, 20).until(lambda d: f"digit_{digit}.png" in d.find_element(By.ID, "results").text)
            assert browser.find_element(By.CSS_SELECTOR, "#results .label").text == digit, label.text
        browser.get(srv.url + "/docs")  # Swagger UI renders from local assets
        WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    finally:
        assert srv.stop()
