"""The demo in a real headless Chromium (Selenium + chromedriver), as a visitor uses it.

Upload the example image and depth (after a wrong-size depth, which must give a message on the
page), paint a stroke on the canvas with real mouse events, pick ``guided``, run, download the
``.npy`` through the browser and check it: painted pixels filled, other known pixels unchanged.
Also checks that the page made no request to anything but the demo's loopback address.

``DEPTHLAB_SCREENSHOT_DIR=docs/images`` writes the page's screenshot there as ``demo.png`` (the
README's picture); otherwise it goes to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from depthlab import io

from .conftest import EXAMPLE, REPO

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.slow  # a real chromium session against the demo server
WAIT_S = 60


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1400,1900",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver, downloads
    finally:
        driver.quit()


def _wait(driver, condition, what):
    try:
        wait = WebDriverWait(
            driver, WAIT_S, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException]
        )
        return wait.until(lambda d: condition(d))
    except Exception:
        pytest.fail(
            f"timed out waiting for {what}; page says: {driver.find_element(By.TAG_NAME, 'body').text[-1500:]}"
        )


def _pick(driver, method: str) -> None:
    labels = [
        lab
        for lab in driver.find_elements(By.CSS_SELECTOR, "#method label")
        if lab.text.startswith(method + ":")
    ]
    assert labels, f"method {method} is not offered"
    labels[0].click()


def _toasts(driver) -> str:
    return " ".join(t.text for t in driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']"))


def _outside_requests(driver, port: int) -> list[str]:
    outside = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] not in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            continue
        url = message["params"].get("request", {}).get("url") or message["params"].get("url", "")
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https", "ws", "wss") and (parsed.hostname, parsed.port) != (
            "127.0.0.1",
            port,
        ):
            outside.append(url)
    return outside


def test_upload_paint_run_download(demo_server, browser, tmp_path):
    driver, downloads = browser
    depth = io.read_depth(EXAMPLE / "depth.png", scale=1000)
    wrong = tmp_path / "wrong_size.npy"
    np.save(wrong, np.ones((20, 30), np.float32))

    driver.get(demo_server.url)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#rgb-file input[type=file]"), "the page")
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "depthlab" in body and "what you paint is filled" in body

    # DepthLab's options only show when DepthLab is the method
    def options_text(d) -> str:
        return " ".join(e.text for e in d.find_elements(By.ID, "depthlab-options") if e.is_displayed())

    assert options_text(driver) == ""
    if demo_server.has_depthlab:
        _pick(driver, "depthlab")
        _wait(driver, lambda d: "Ensemble size" in options_text(d), "DepthLab's options")
        assert "preserve_known" in options_text(driver) and "Denoising steps" in options_text(driver)
        _pick(driver, "linear")
        _wait(driver, lambda d: options_text(d) == "", "DepthLab's options to hide")

    # 1. a wrong-size depth gives a message on the page, then the real inputs
    driver.find_element(By.CSS_SELECTOR, "#rgb-file input[type=file]").send_keys(str(EXAMPLE / "rgb.png"))
    driver.find_element(By.CSS_SELECTOR, "#depth-file input[type=file]").send_keys(str(wrong))
    _wait(driver, lambda d: "pixel-aligned" in _toasts(d), "the wrong-size message")
    driver.find_element(By.CSS_SELECTOR, "#depth-file button[aria-label='Clear']").click()
    driver.find_element(By.CSS_SELECTOR, "#depth-file input[type=file]").send_keys(str(EXAMPLE / "depth.png"))
    _wait(driver, lambda d: "Loaded 320x240" in d.find_element(By.TAG_NAME, "body").text, "the loaded inputs")

    # 2. paint one horizontal stroke with the brush (real mouse events on the canvas)
    editor = driver.find_element(By.ID, "mask-editor")
    editor.find_element(By.CSS_SELECTOR, "button[aria-label='Brush']").click()
    canvas = editor.find_elements(By.CSS_SELECTOR, "canvas")[-1]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    stroke = ActionChains(driver, duration=10).move_to_element_with_offset(canvas, -80, 10).click_and_hold()
    for _ in range(8):
        stroke = stroke.move_by_offset(20, 0)
    stroke.release().perform()
    _wait(driver, lambda d: "pixels to fill" in d.find_element(By.TAG_NAME, "body").text, "the mask preview")

    # 3. guided, run, wait for the result
    _pick(driver, "guided")
    driver.find_element(By.ID, "run").click()
    _wait(driver, lambda d: "Method used" in d.find_element(By.ID, "status").text, "the result")
    status = driver.find_element(By.ID, "status").text
    assert "guided" in status and "Time:" in status
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#completed img"), "the completed picture")

    # 4. download the .npy (and the known mask) through the browser
    links = {
        a.get_attribute("download") or a.text: a
        for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")
    }
    names = {Path(urlparse(a.get_attribute("href")).path).name: a for a in links.values()}
    assert {"rgb_depth.npy", "rgb_depth.png", "rgb_known_mask.png"} <= set(names), names
    for name in ("rgb_depth.npy", "rgb_known_mask.png"):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", names[name])
        names[name].click()
        _wait(
            driver,
            lambda d, n=name: (downloads / n).is_file() and not list(downloads.glob("*.crdownload")),
            f"the download of {name}",
        )
    completed = np.load(downloads / "rgb_depth.npy")
    known = io.read_mask(downloads / "rgb_known_mask.png")
    painted = (depth > 0) & ~known  # the stroke covered pixels that had depth
    assert painted.sum() > 200, f"the stroke covered only {painted.sum()} pixels with depth"
    rows, cols = np.nonzero(painted)
    assert np.ptp(cols) > 3 * max(np.ptp(rows), 1), "the filled region is not a horizontal stroke"
    assert np.all(np.isfinite(completed[painted])) and np.all(completed[painted] > 0)
    assert not np.array_equal(completed[painted], depth[painted])
    np.testing.assert_array_equal(completed[known], depth[known])  # known depth kept exactly
    assert np.all(np.isfinite(completed[depth == 0]))  # the sensor holes were filled too

    # 5. a 3D view and a PLY once depthlab.geometry is there
    if "rgb_points.ply" in names:
        plyfile = pytest.importorskip("plyfile")
        names["rgb_points.ply"].click()
        _wait(
            driver,
            lambda d: (downloads / "rgb_points.ply").is_file() and not list(downloads.glob("*.crdownload")),
            "the PLY download",
        )
        assert plyfile.PlyData.read(downloads / "rgb_points.ply")["vertex"].count == int(
            np.isfinite(completed).sum()
        )
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#model3d canvas"), "the 3D view")

    # 6. the README's screenshot, and no request left the machine
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(1.0)  # let the slider and 3D view finish drawing
    target = Path(os.environ.get("DEPTHLAB_SCREENSHOT_DIR", tmp_path))
    target = target if target.is_absolute() else REPO / target
    target.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 40, 1200), 2600))
    time.sleep(0.5)
    assert driver.save_screenshot(str(target / "demo.png"))
    assert _outside_requests(driver, demo_server.port) == []
