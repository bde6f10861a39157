"""Headless Chromium driven through ChromeDriver (Selenium) for the report tests, with the flags this machine's
notes ask for: no sandbox (root), no GPU, no background networking, component updates, first-run or sync (the
network is closed), and a fresh profile per browser."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]


@contextmanager
def open_browser(chromium: tuple[str, str], size: tuple[int, int] = (1400, 1000)) -> Iterator[webdriver.Chrome]:
    browser, driver = chromium
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:  # the viewport itself at that size (the window's size includes its frame)
        chrome.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False})
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(chrome: webdriver.Chrome) -> list[dict]:
    """Console messages of level SEVERE (script errors, failed loads, CSP refusals) since the last call."""
    return [entry for entry in chrome.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(chrome: webdriver.Chrome, page: str) -> list[str]:
    """Every URL the page at ``page`` asked for (DevTools' Network.requestWillBeSent events)."""
    urls = []
    for entry in chrome.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent" and message["params"].get("documentURL") == page:
            urls.append(message["params"]["request"]["url"])
    return urls


def screenshot(chrome: webdriver.Chrome) -> Image.Image:
    return Image.open(io.BytesIO(chrome.get_screenshot_as_png())).convert("RGB")


def ink(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> tuple[float, int]:
    """(standard deviation of the pixel values, number of distinct colours) of the image or a box of it."""
    pixels = np.asarray(image.crop(box) if box else image).reshape(-1, 3)
    return float(pixels.std()), len(np.unique(pixels, axis=0))


def texts(chrome: webdriver.Chrome, css: str) -> list[str]:
    return [e.text for e in chrome.find_elements(By.CSS_SELECTOR, css)]


def scroll_to(chrome: webdriver.Chrome, css: str) -> None:
    chrome.execute_script("arguments[0].scrollIntoView()", chrome.find_element(By.CSS_SELECTOR, css))


def images_loaded(chrome: webdriver.Chrome, css: str) -> list[bool]:
    """Whether each image matching ``css`` has arrived and decoded (lazy images load once scrolled to)."""
    return chrome.execute_script("return Array.from(document.querySelectorAll(arguments[0]))"
                                 ".map(i => i.complete && i.naturalWidth > 0)", css)


def wait_for_images(chrome: webdriver.Chrome, css: str, seconds: float = 10) -> None:
    WebDriverWait(chrome, seconds).until(lambda c: all(images_loaded(c, css)))
