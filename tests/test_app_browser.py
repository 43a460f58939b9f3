"""cdiff studio in a real browser: the system's headless Chromium driven by Playwright.

Loads an example mask, paints a stroke, types a caption, generates, waits for the image and the
influence maps, moves the timestep slider; then edits a photo and moves α. With
``CDIFF_SCREENSHOTS=1`` the screenshots go to ``docs/images/app_*.png`` (the ones docs/app.md
shows), otherwise to the test's temporary folder. No browser is downloaded: Playwright drives the
distribution's Chromium (``apt-get install -y chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no system Chromium to drive (apt-get install -y chromium; .ci/run installs it)"
)
pytest.importorskip("gradio", reason="the app extra is not installed: pip install 'cdiff[app]'")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed: pip install 'cdiff[dev]'"
)

from cdiff.app.server import launch  # noqa: E402
from cdiff.app.studio import Studio  # noqa: E402
from cdiff.data.masks import CLASS_ID, PALETTE, read_mask  # noqa: E402
from cdiff.stages.demo_weights import shipped_dir  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"
NO_HAT = 2  # the third example: mask 3600, which has no hat


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "demo"
    shutil.copytree(shipped_dir(), run)
    studio = Studio.from_run(run, device="cpu")
    demo = launch(studio, port=free_port(), block=False, quiet=True)
    try:
        yield demo.local_url.rstrip("/"), run
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(app_url):
    url, _ = app_url
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        page.outside = []  # requests to anything but the app: there must be none (offline)
        page.on(
            "request",
            lambda r: page.outside.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None,
        )
        page.goto(url + "/")
        page.wait_for_selector("#cdiff-canvas canvas", timeout=60_000)
        yield page
        browser.close()


def screenshot(page, name: str, tmp_path: Path) -> Path:
    """A full-page screenshot, quantised to 256 colours (small enough to commit)."""
    folder = DOCS if os.environ.get("CDIFF_SCREENSHOTS") == "1" else tmp_path
    path = folder / f"app_{name}.png"
    raw = page.screenshot(full_page=True, path=str(tmp_path / f"raw_{name}.png"))
    assert raw
    with Image.open(tmp_path / f"raw_{name}.png") as im:
        im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            path, optimize=True
        )
    return path


def painted_pixels(page, k: int) -> int:
    """Pixels of class ``k``'s colour on the canvas as the page shows it."""
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#cdiff-canvas").screenshot())).convert("RGB"))
    return int((np.abs(shot.astype(int) - PALETTE[k]).sum(-1) < 12).sum())


def paint_hat(page) -> None:
    """Pick the hat brush and drag it across the top of the head (again, while the canvas was still
    loading the example and dropped the stroke)."""
    page.locator("#cdiff-canvas").scroll_into_view_if_needed()  # the examples are further down
    page.locator("#cdiff-canvas button[aria-label='Color']").click()
    page.locator("#cdiff-canvas button.color").nth(CLASS_ID["hat"]).click()
    page.wait_for_timeout(300)
    box = page.locator("#cdiff-canvas canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2 - 60, box["y"] + box["height"] / 2 - 110
    for _ in range(5):
        page.mouse.move(x, y)
        page.mouse.down()
        for k in range(1, 5):  # few events: each one redraws the (software-rendered) canvas
            page.mouse.move(x + 30 * k, y)
        page.mouse.up()
        page.wait_for_timeout(300)
        if painted_pixels(page, CLASS_ID["hat"]) > 500:
            return
        page.wait_for_timeout(700)
    raise AssertionError("the stroke never reached the canvas")


SEEN = """el => { const seen = (window.cdiffSeen ||= new Set()); seen.add(el.value);
                   return seen.size >= 10 && el.value === '20' }"""


def play_all_steps(page) -> None:
    """▶ play, and see the step box run through the steps to the last (once more if the first click
    came while the page was still taking the result in)."""
    number = page.locator("#cdiff-timestep input[type='number']").element_handle()
    for attempt in range(2):
        page.evaluate("window.cdiffSeen = new Set()")
        page.locator("#cdiff-play").click()
        try:
            page.wait_for_function(SEEN, arg=number, polling=40, timeout=30_000)
            page.wait_for_timeout(800)  # play's end (its last frame once more)
            return
        except sync_api.TimeoutError:
            if attempt:
                raise
            print("play: the step box did not run through the steps; clicking ▶ play again")


def test_paint_generate_and_scrub_the_influence_maps(page, app_url, tmp_path):
    _, run = app_url
    page.locator("#cdiff-examples tbody tr").nth(NO_HAT).click()
    page.wait_for_timeout(1000)  # the canvas loads the example
    paint_hat(page)
    page.locator("#cdiff-caption textarea").fill("He has a full beard. He is in his seventies.")
    page.locator("#cdiff-generate").click()
    page.wait_for_selector("#cdiff-result img", timeout=60_000)
    page.wait_for_selector("#cdiff-influence img", timeout=60_000)
    page.wait_for_selector("#cdiff-files a", timeout=60_000)
    assert page.locator("#cdiff-status").inner_text().startswith("done")
    play_all_steps(page)
    before = page.locator("#cdiff-influence img").get_attribute("src")
    page.locator("#cdiff-timestep input[type='range']").focus()
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    page.wait_for_function(
        "src => document.querySelector('#cdiff-influence img').src !== src", arg=before, timeout=20_000
    )
    assert page.locator("#cdiff-timestep input[type='number']").input_value() == "15"
    time.sleep(0.5)
    screenshot(page, "generate", tmp_path)
    sent = sorted(run.glob("app/*/*/conditions/000-mask.png"))[-1]  # the mask the page sent, as written
    example = read_mask(run / "examples" / "masks" / "3600.png")
    assert (example == CLASS_ID["hat"]).sum() == 0 and (read_mask(sent) == CLASS_ID["hat"]).sum() > 20
    assert page.outside == []


def test_edit_a_photo_and_move_alpha(page, tmp_path):
    page.get_by_role("tab", name="Edit").click()
    page.wait_for_selector("#cdiff-edit", timeout=10_000)
    quick = {"#cdiff-embed-steps": 10, "#cdiff-finetune-steps": 10, "#cdiff-edit-steps": 8}
    if os.environ.get("CDIFF_SCREENSHOTS") == "1":  # the docs' screenshot: the preset's edit (about a minute)
        quick = {}
    for slider, value in quick.items():
        number = page.locator(f"{slider} input[type='number']")
        number.fill(str(value))
        number.press("Enter")
    page.locator("#cdiff-edit").click()
    page.wait_for_selector("#cdiff-sweep img", timeout=300_000)
    page.wait_for_selector("#cdiff-rendered img", timeout=60_000)
    before = page.locator("#cdiff-rendered img").get_attribute("src")
    slider = page.locator("#cdiff-alpha input[type='range']")
    box = slider.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)  # α ≈ -0.2: a release
    page.wait_for_function(
        "src => document.querySelector('#cdiff-rendered img').src !== src", arg=before, timeout=60_000
    )
    alpha = float(page.locator("#cdiff-alpha input[type='number']").input_value())
    assert -0.6 < alpha < 0.2
    time.sleep(0.5)
    screenshot(page, "edit", tmp_path)
    rendered = page.locator("#cdiff-rendered img")
    assert np.isfinite(alpha) and rendered.is_visible()
    assert page.outside == []
