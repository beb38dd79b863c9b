"""The report in a real browser: Debian's headless Chromium, driven over the DevTools protocol
(bench/browser.py). `.ci/run` installs Chromium; without it these tests fail (they
never skip).

Controls are changed as a user would (value + the event the page listens to, or a real mouse
click), and what is visible is read back from the DOM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_support import EXAMPLES, make_rows, page_data, write_jsonl

from bench.browser import IMAGES_IN_VIEW_LOADED, Chromium, find_chromium
from spacemind_cli.report import ReportConfig, build_report

VIDEOS = EXAMPLES / "videos"
READY = "document.body && document.body.dataset.ready === '1'"
CARDS = "[...document.querySelectorAll('#list article.q')].map(a => a.id)"
VISIBLE = "+document.body.dataset.visible"
# every image in the list, loaded now (lazy ones included): [src, naturalWidth] each
LOAD_ALL_IMAGES = """Promise.race([new Promise(ok => setTimeout(() => ok(null), 15000)),
  Promise.all([...document.querySelectorAll('#list img')].map(i => new Promise(ok => {
    const done = () => ok([i.getAttribute('src'), i.naturalWidth]);
    if (i.complete && i.currentSrc) return done();
    i.addEventListener('load', done); i.addEventListener('error', done); i.loading = 'eager';
  })))])"""


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    assert exe, "the report's browser tests need Chromium: apt-get install -y chromium (.ci/run installs it)"
    with Chromium(exe) as b:
        yield b


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("site")
    a = write_jsonl(d / "a.jsonl", make_rows(0, "a"))
    b = write_jsonl(d / "b.jsonl", make_rows(1, "b"))
    fast = ReportConfig(plot=False)
    return {
        "single": (d / "single", build_report(a, VIDEOS, d / "single", config=fast)),
        "both": (d / "both", build_report(a, VIDEOS, d / "both", compare=b, config=fast)),
    }


def open_report(browser, site: Path, hash_: str = ""):
    return browser.open((site / "index.html").resolve().as_uri() + hash_, wait=READY)


def rendered(page) -> int:
    return int(page.js("+document.body.dataset.rendered"))


def all_pages(page) -> tuple[list[str], list[str]]:
    """Walk every page with real clicks on "next": (question anchors, image srcs) seen."""
    ids, srcs = [], []
    while True:
        ids += page.js(CARDS)
        srcs += page.js("[...document.querySelectorAll('#list img')].map(i => i.getAttribute('src'))")
        if page.js("document.querySelector('.pager .next').disabled"):
            return ids, srcs
        n = rendered(page)
        page.click(".pager .next")
        page.wait(f"+document.body.dataset.rendered > {n}")


def test_every_question_and_thumbnail_is_on_the_rendered_page(browser, sites):
    site, _ = sites["single"]
    data = page_data(site)
    with open_report(browser, site) as page:
        assert page.js("document.querySelector('#count').textContent") == "Showing 1–50 of 68 questions"
        ids, srcs = all_pages(page)
        assert sorted(ids) == sorted(q["k"] for q in data["questions"]) and len(ids) == len(set(ids)) == 68
        # the thumbnails shown are files of the report, and every scene's strip is there
        assert srcs and all((site / s).is_file() for s in srcs)
        assert set(srcs) == {v[0] for s in data["scenes"] for v in s["th"].values()}
        # a card shows the question, the raw prediction, the parsed answer and the truth
        q = data["questions"][-1]
        text = page.js(f"document.getElementById({json.dumps(q['k'])}).innerText")
        assert q["q"] in text and q["r"][0]["p"] in text and f"truth\n{q['gt']}" in text.replace("\t", "\n")
        # the images of the page load (lazy ones forced), none broken
        loaded = page.js(LOAD_ALL_IMAGES)
        assert loaded and all(w > 0 for _, w in loaded), [s for s, w in loaded or [] if not w]
        # and nothing came from anywhere but the report folder
        base = site.resolve().as_uri() + "/"
        fetched = page.requests()
        assert all(u.startswith(base) for u in fetched), [u for u in fetched if not u.startswith(base)]
        names = {u[len(base):] for u in fetched}
        assert {"index.html", "assets/app.js", "assets/style.css"} <= names and any(n.startswith("thumbs/") for n in names)


def test_first_page_does_not_load_every_thumbnail(browser, sites):
    site, summary = sites["single"]
    with open_report(browser, site) as page:
        page.js(IMAGES_IN_VIEW_LOADED)
        # only the first page is in the DOM, and its lazy images below the fold stay unloaded
        in_dom = page.js("document.querySelectorAll('#list img').length")
        assert in_dom == summary["first_page"]["thumbnails"] < summary["thumbnails"]
        requested = [u for u in page.requests() if "/thumbs/" in u]
        assert 0 < len(requested) < in_dom


def test_filters_search_and_sort_change_what_is_visible(browser, sites):
    site, _ = sites["single"]
    data = page_data(site)
    qs = data["questions"]
    with open_report(browser, site) as page:
        assert page.js(VISIBLE) == 68
        page.set_value("#f-cat", "Rel. Dir.")
        want = {q["k"] for q in qs if q["cat"] == "Rel. Dir."}
        assert page.js(VISIBLE) == len(want) == 24 and set(page.js(CARDS)) == want

        page.set_value("#f-res", "wrong")
        want = {q["k"] for q in qs if q["cat"] == "Rel. Dir." and q["r"][0]["v"] == "wrong"}
        assert want and set(page.js(CARDS)) == want
        assert page.js("[...document.querySelectorAll('#list article.q')].every(a => a.classList.contains('v-wrong'))")
        assert "res=wrong" in page.js("location.hash")

        page.click("#f-reset")
        page.wait(f"{VISIBLE} === 68")
        page.set_value("#f-search", "lamp table")  # every word must occur
        want = {q["k"] for q in qs if all(w in json.dumps(q).lower() for w in ("lamp", "table"))}
        assert 0 < len(want) < 68 and set(page.js(CARDS)) == want

        page.set_value("#f-search", "")
        page.set_value("#f-scene", "synthetic/room_0001")
        assert page.js(VISIBLE) == 17
        assert page.js("[...new Set([...document.querySelectorAll('#list section.scene')].map(s => s.dataset.scene))]") == ["synthetic/room_0001"]

        page.set_value("#f-scene", "")
        page.set_value("#f-sort", "score-asc")
        scores = [qs[int(i)]["r"][0]["sc"] for i in page.js("[...document.querySelectorAll('#list article.q')].map(a => a.dataset.qi)")]
        assert len(scores) == 50 and scores == sorted(scores) and scores[0] == 0.0
        page.set_value("#f-sort", "score-desc")
        assert page.js("document.querySelector('#list article.q').className").endswith("v-right")

        # the filtered view is a link: a new page opened on it shows the same questions
        page.set_value("#f-sort", "scene")
        page.set_value("#f-res", "partly")
        link = page.js("location.hash")
        with open_report(browser, site, link) as other:
            assert other.js(CARDS) == page.js(CARDS) == [q["k"] for q in qs if q["r"][0]["v"] == "partly"]


def test_question_anchor_opens_its_page(browser, sites):
    site, _ = sites["single"]
    with open_report(browser, site, "#q-60") as page:  # scene order, 50 per page: question 60 is on page 2
        page.wait("document.getElementById('q-60') !== null")
        assert page.js("document.getElementById('q-60').classList.contains('hl')")
        assert page.js("document.querySelector('.pager .page').textContent") == "page 2 of 2"
        assert page.js("location.hash") == "#q-60"


def test_compare_shows_where_the_runs_disagree(browser, sites):
    site, summary = sites["both"]
    data = page_data(site)
    with open_report(browser, site) as page:
        page.set_value("#f-n", "500")  # one page
        page.set_value("#f-cmp", "disagree")
        want = [q for q in data["questions"] if q["cmp"].startswith("disagree")]
        assert page.js(VISIBLE) == len(want) == summary["join"]["disagree"] > 0
        assert set(page.js(CARDS)) == {q["k"] for q in want}
        cards = page.js(
            "[...document.querySelectorAll('#list article.q')].map(a => [a.id, a.querySelectorAll('.run').length,"
            " !!a.querySelector('.badge.dis'), [...a.querySelectorAll('.run')].map(r => r.classList.contains('win'))])"
        )
        by_k = {q["k"]: q for q in want}
        for k, n_runs, badge, wins in cards:
            a, b = by_k[k]["r"]
            assert n_runs == 2 and badge
            assert wins == [a["sc"] > b["sc"], b["sc"] > a["sc"]]  # the higher score is marked
        # each side's own prediction and score are on the card
        q = want[0]
        text = page.js(f"document.getElementById({json.dumps(q['k'])}).innerText")
        assert q["r"][0]["p"] in text and q["r"][1]["p"] in text and "A: a" in text and "B: b" in text

        page.set_value("#f-cmp", "b-better")
        assert page.js(VISIBLE) == summary["join"]["b_better"]


def test_screenshot_of_a_report_with_missing_scenes(browser, sites, tmp_path):
    import shutil

    from PIL import Image

    root = tmp_path / "scenes" / "synthetic"
    root.mkdir(parents=True)
    for name in ("room_0000.mp4", "room_0001.mp4"):
        shutil.copy(VIDEOS / "synthetic" / name, root)
    a = write_jsonl(tmp_path / "a.jsonl", make_rows(0))
    build_report(a, tmp_path / "scenes", tmp_path / "r", config=ReportConfig(plot=False))
    with open_report(browser, tmp_path / "r", "#scene=synthetic%2Froom_0003") as page:
        assert page.js(VISIBLE) == 17
        assert page.js("document.querySelector('#list .badge.st-missing').textContent") == "missing"
        assert page.js("document.querySelectorAll('#list img').length") == 0
        page.js("document.querySelector('#browse').scrollIntoView()")
        shot = page.screenshot(tmp_path / "shot.png")
        with Image.open(shot) as img:
            assert img.size == (1280, 900)
            assert len(img.convert("RGB").getcolors(1 << 20)) > 50  # a rendered page, not a blank one


def test_model_text_is_shown_as_text_never_run(browser, tmp_path):
    """Predictions are model output and questions come from files: markup in them is displayed,
    not executed (the JSON blob cannot close its <script>, the page escapes every field)."""
    evil = '</script><script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    rows = make_rows(0)[:4]
    rows[0] = dict(rows[0], prediction=evil, question=rows[0]["question"] + " " + evil, id="x\"'<b>")
    write_jsonl(tmp_path / "a.jsonl", rows)
    build_report(tmp_path / "a.jsonl", VIDEOS, tmp_path / "r", config=ReportConfig(plot=False))
    with open_report(browser, tmp_path / "r") as page:
        assert page.js("window.pwned === undefined")
        assert page.js("document.querySelectorAll('#list img[src=\"x\"], #list b').length") == 0
        card = page.js("document.querySelector('#list article.q').innerText")
        assert evil in card and "#x\"'<b>" in card
        assert page.js(VISIBLE) == 4


def test_frame_strip_opens_the_whole_frame_set(browser, sites):
    site, _ = sites["single"]
    with open_report(browser, site) as page:
        assert page.js("document.getElementById('lightbox').hidden")
        page.click("#list button.fr")
        page.wait("!document.getElementById('lightbox').hidden")
        assert page.js("document.querySelectorAll('#lightbox figure').length") == 32
        assert page.js("document.querySelector('#lightbox figure.cur figcaption').textContent") == "frame 1"
        page.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27})
        page.wait("document.getElementById('lightbox').hidden")
