"""End to end: `lossboard serve` in a subprocess, the dashboard in headless Chromium.

Checks what AppTest cannot: the CLI starts a real server, the page renders in a browser, and
the browser talks to nobody but that server (the dashboard makes no external network calls).
Needs Debian's chromium (``apt-get install -y chromium``) and the Python playwright package;
never ``playwright install``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from lossboard.ingest.load import IngestOptions, ingest
from lossboard.ingest.mapping import MappingOptions

if TYPE_CHECKING:  # playwright may be missing: then the tests skip, see _chromium_or_skip
    from playwright.sync_api import Locator, Page, Request

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
SERVER_START_TIMEOUT_S = 60
PAGE_TIMEOUT_MS = 30_000
SCREENSHOT_COPY = Path("/tmp/lossboard-e2e.png")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

# 6 rows: 4 good, 2 quarantined (bad_ts, score_out_of_range).
PREDICTIONS_CSV = """\
request_id,ts,score,region,email
r1,2024-01-01T00:00:00Z,0.10,eu,a@example.com
r2,2024-01-01T01:00:00Z,0.90,us,b@example.com
r3,2024-01-01T02:00:00Z,0.50,eu,c@example.com
r4,not-a-time,0.30,eu,d@example.com
r5,2024-01-01T04:00:00Z,1.70,us,e@example.com
r6,2024-01-01T05:00:00Z,0.20,us,f@example.com
"""


# --------------------------------------------------------------------------- chromium
def _chromium_or_skip() -> str:
    """Chromium's path; without it the test skips, or fails under CI=true (a silent skip in
    CI would hide that the browser test never ran)."""
    path = shutil.which("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the Python package playwright (pip install -e '.[dev]')"
    else:
        missing = "" if path else "Chromium (as root: apt-get install -y chromium)"
    if missing:
        message = f"the browser test needs {missing}; never run `playwright install`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert path is not None
    return path


@dataclass
class Traffic:
    """Every URL the browser asked for, and the requests that failed."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # Requests asked for and not yet finished or failed. Navigating away while the page still
    # loads its lazy chunks (Plotly's, the data grid's) makes the browser abort them: that is
    # the test's doing, not a broken page, so a test waits for this to empty before it leaves.
    in_flight: set[object] = field(default_factory=set)

    def settle(self, page: Page, quiet_ms: int = 500) -> None:
        """Until no request has been in flight for `quiet_ms` (page.wait_for_load_state's
        'networkidle' only covers the first load, not the chunks a rerun fetches later)."""
        deadline = time.monotonic() + SAMPLE_TIMEOUT_MS / 1000
        quiet_since = None
        while True:
            if self.in_flight:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_ms / 1000:
                return
            assert time.monotonic() < deadline, f"requests still in flight: {self.in_flight}"
            page.wait_for_timeout(100)

    def external(self) -> list[str]:
        # data: and blob: URLs never leave the browser.
        return [u for u in self.requests
                if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname not in LOCAL_HOSTS]


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[Page, Traffic]]:
    """A fresh headless Chromium page (own profile in tmp_path) and the traffic it makes."""
    executable = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    traffic = Traffic()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=executable, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1800})
        try:
            def started(request: Request) -> None:
                traffic.requests.append(request.url)
                traffic.in_flight.add(request)

            def failed(request: Request) -> None:
                traffic.failed.append(f"{request.url}: {request.failure}")
                traffic.in_flight.discard(request)

            context.on("request", started)
            context.on("requestfinished", lambda r: traffic.in_flight.discard(r))
            context.on("requestfailed", failed)
            page = context.pages[0] if context.pages else context.new_page()
            page.on("websocket", lambda ws: traffic.requests.append(ws.url))
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield page, traffic
        finally:
            context.close()


# --------------------------------------------------------------------------- server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lossboard_cli() -> list[str]:
    """The installed `lossboard` script of this interpreter, as a user would run it."""
    script = Path(sys.executable).with_name("lossboard")
    if script.exists():
        return [str(script)]
    found = shutil.which("lossboard")
    return [found] if found else [sys.executable, "-m", "lossboard.dashboard.cli"]


def _health(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.read().decode()
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Path], Server]]:
    """Start `lossboard serve --db DB --port P --headless`; stopped at teardown.

    The server runs in its own session so that teardown can stop `lossboard serve` and the
    `streamlit run` it starts by their process group id, and nothing else."""
    started: list[subprocess.Popen[bytes]] = []

    def start(db: Path) -> Server:
        port = _free_port()
        log = tmp_path / f"serve-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*_lossboard_cli(), "serve", "--db", str(db), "--port", str(port), "--headless"],
                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
        started.append(proc)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while _health(port) != "ok":
            if proc.poll() is not None:
                pytest.fail(f"lossboard serve exited with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"lossboard serve did not answer /_stcore/health within "
                            f"{SERVER_START_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.2)
        return Server(url=f"http://127.0.0.1:{port}/", port=port, process=proc, log=log)

    try:
        yield start
    finally:
        for proc in started:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (its id is the CLI's pid: start_new_session), then
    SIGKILL whatever of that group is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- checks
def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _metric_value(page: Page, label: str) -> Locator:
    metric = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
    return metric.get_by_test_id("stMetricValue")


def _assert_local_only(traffic: Traffic) -> None:
    assert traffic.requests, "the browser made no requests at all"
    assert not traffic.external(), f"requests to outside hosts: {traffic.external()}"
    # Not even a local one: a failed asset would be a broken page.
    assert not traffic.failed, f"failed requests: {traffic.failed}"


def _assert_no_external_ip_lookup(server: Server) -> None:
    """The server side makes no external calls either: a headless Streamlit without a server
    address looks up its public IP (checkip.amazonaws.com) for the "External URL" banner; it
    logs that URL, or a warning when the lookup fails, before its "URL:" lines."""
    deadline = time.monotonic() + 10
    while "URL: " not in (log := server.log.read_text()):
        assert time.monotonic() < deadline, f"no URL banner from Streamlit:\n{log}"
        time.sleep(0.2)
    assert "External URL" not in log and "Did not auto detect external IP" not in log, log


# --------------------------------------------------------------------------- tests
def test_data_health_in_browser(tmp_path: Path, serve: Callable[[Path], Server],
                                browser_page: tuple[Page, Traffic]) -> None:
    from playwright.sync_api import expect

    db = tmp_path / "lossboard.duckdb"
    csv = tmp_path / "predictions.csv"
    csv.write_text(PREDICTIONS_CSV)
    report = ingest([csv], IngestOptions(db_path=db, flags=MappingOptions(
        model="fraud", model_version="v1")))
    assert report.ok, [f.message for f in report.files]
    n_predictions = report.totals()["n_accepted"]
    assert (n_predictions, report.totals()["n_quarantined"]) == (4, 2)  # the CSV above

    server = serve(db)
    page, traffic = browser_page
    page.goto(server.url + "data-health")

    expect(page.get_by_role("heading", name="Data health")).to_be_visible()
    expect(_metric_value(page, "Predictions")).to_have_text(f"{n_predictions:,}")
    expect(_metric_value(page, "Quarantined rows")).to_have_text("2")
    expect(page.get_by_role("heading", name="Columns")).to_be_visible()
    # Ingest runs, quarantine by reason, its examples, columns, the hourly rollup's state (the
    # count of 4 this asked for before the rollup existed was met for a moment while the page
    # still rendered, so it passed until a slower run showed the fifth table first).
    expect(page.get_by_role("heading", name="Hourly rollup")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(5)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlert")).to_have_count(0)
    page.wait_for_timeout(1000)  # let the data grids paint

    shot = tmp_path / "data-health.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, SCREENSHOT_COPY)
    width, height = _png_size(shot)
    assert width >= 1000 and height >= 800, (width, height)
    # A blank page compresses to a few kB; this one has text, four tables and metrics.
    assert shot.stat().st_size > 30_000, shot.stat().st_size
    _assert_local_only(traffic)
    _assert_no_external_ip_lookup(server)


def test_onboarding_then_first_ingest_in_browser(
        tmp_path: Path, serve: Callable[[Path], Server], browser_page: tuple[Page, Traffic]) -> None:
    from playwright.sync_api import expect

    db = tmp_path / "nothing-here.duckdb"
    assert not db.exists()
    server = serve(db)  # creates an empty database: still the onboarding page
    page, traffic = browser_page
    page.goto(server.url)

    expect(page.get_by_role("heading", name="Welcome to lossboard")).to_be_visible()
    expect(page.get_by_test_id("stCode").filter(has_text="lossboard ingest")).to_have_count(1)
    expect(page.get_by_text(f"lossboard ingest --db {db}").first).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)

    # The page says it refreshes by itself once an ingest lands: run the command it shows,
    # while the server is up, and wait for the dashboard (On-call opens) without reloading.
    csv = tmp_path / "predictions.csv"
    csv.write_text(PREDICTIONS_CSV)
    done = subprocess.run([*_lossboard_cli(), "ingest", "--db", str(db), str(csv),
                           "--model", "fraud", "--model-version", "v1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    expect(page.get_by_role("heading", name="On-call")).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    _wait_idle(page)
    traffic.settle(page)  # On-call's chart chunks load after its heading shows
    page.goto(server.url + "data-health")
    expect(_metric_value(page, "Predictions")).to_have_text("4")  # the CSV above
    _assert_local_only(traffic)


def test_sigterm_to_serve_stops_the_server(tmp_path: Path, serve: Callable[[Path], Server]) -> None:
    # A supervisor, `timeout` or `kill PID` signals the `lossboard serve` process only; the
    # Streamlit server it started must not outlive it, holding the port and the database.
    server = serve(tmp_path / "lossboard.duckdb")
    server.process.terminate()
    server.process.wait(timeout=15)
    deadline = time.monotonic() + 15
    while _health(server.port) is not None or _group_alive(server.process.pid):
        assert time.monotonic() < deadline, (
            f"the dashboard still answers on port {server.port} (or its process is still "
            f"running) 15 s after SIGTERM to lossboard serve:\n{server.log.read_text()}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- the four pages
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
#: URL path and title of each page (dashboard/app.py); On-call is the default page, at "/".
PAGES = (("", "On-call"), ("executive", "Executive"), ("debug", "Debug"),
         ("data-health", "Data health"))
#: The sample's On-call page computes every section cold: ~10 s on a 2-core machine.
SAMPLE_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lossboard.dashboard.cli import ensure_sample_database

    db = tmp_path_factory.mktemp("sample") / "lossboard.duckdb"
    ensure_sample_database(db)
    return db


def _shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.wait_for_timeout(1500)  # let Plotly and the data grids paint
    page.screenshot(path=str(path), full_page=True)
    return path


def _wait_idle(page: Page) -> None:
    """Until the app's script run is over (Streamlit marks its root element with the state)."""
    page.wait_for_timeout(300)  # a rerun just asked for may not have started yet
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=SAMPLE_TIMEOUT_MS)


def _tiles(page: Page) -> dict[str, str]:
    labels = page.get_by_test_id("stMetricLabel").all_inner_texts()
    values = page.get_by_test_id("stMetricValue").all_inner_texts()
    return dict(zip(labels, values))


def test_every_page_on_the_sample_and_a_shared_url(
        tmp_path: Path, sample_db: Path, serve: Callable[[Path], Server],
        browser_page: tuple[Page, Traffic]) -> None:
    from playwright.sync_api import expect

    # expect() waits 5 s by default, whatever page.set_default_timeout says; a cold page of
    # the sample takes longer on a loaded 2-core machine.
    wait = {"timeout": SAMPLE_TIMEOUT_MS}
    server = serve(sample_db)
    page, traffic = browser_page
    page.set_default_timeout(SAMPLE_TIMEOUT_MS)
    for url_path, title in PAGES:
        traffic.settle(page)  # leave the last page only once its chunks are in
        page.goto(server.url + url_path)
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(**wait)
        # The sidebar wrote the Filter into the URL: every view is a link.
        page.wait_for_url(lambda url: "model=fraud" in url and "range=7d" in url)
        _wait_idle(page)
        expect(page.get_by_test_id("stException")).to_have_count(0, **wait)
        expect(page.get_by_text("Page not found")).to_have_count(0, **wait)
        if title != "Data health":  # the other pages open with at least one chart, drawn
            expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible(**wait)
        shot = _shot(page, f"page-{url_path or 'oncall'}")
        assert shot.stat().st_size > 30_000, (title, shot.stat().st_size)

    # Executive: the tiles, then a filter change through the sidebar.
    traffic.settle(page)
    page.goto(server.url + "executive")
    _wait_idle(page)
    expect(_metric_value(page, "Log loss")).to_have_text(re.compile(r"^\d"), **wait)
    expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible(**wait)
    week = _tiles(page)
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(
        has_text="Time range").click()
    page.get_by_role("option", name="last 30d").click()
    page.wait_for_url("**range=30d**")
    _wait_idle(page)
    month = _tiles(page)
    assert month["Log loss"] != week["Log loss"], (week, month)
    _shot(page, "executive-30d")

    # The shared URL, opened in a new tab (a new session), shows the same view.
    shared = page.url
    other = page.context.new_page()
    other.goto(shared)
    expect(other.get_by_role("heading", name="Executive", exact=True)).to_be_visible(**wait)
    # Streamlit may report "not running" before a new session's first run starts: wait for
    # the tile itself, then compare them all.
    expect(_metric_value(other, "Log loss")).to_have_text(month["Log loss"], **wait)
    _wait_idle(other)
    assert _tiles(other) == month
    assert other.url == shared
    other.close()

    # Back returns to the 7-day view, forward to the 30-day one.
    page.go_back()
    page.wait_for_url("**range=7d**")
    _wait_idle(page)
    expect(_metric_value(page, "Log loss")).to_have_text(week["Log loss"], **wait)
    page.go_forward()
    page.wait_for_url("**range=30d**")
    _wait_idle(page)
    expect(_metric_value(page, "Log loss")).to_have_text(month["Log loss"], **wait)

    # The download button gives the file `lossboard export-report` writes for the same filter.
    with page.expect_download(timeout=SAMPLE_TIMEOUT_MS) as download:
        page.get_by_test_id("stDownloadButton").get_by_role("button").click()
    downloaded = tmp_path / "download.html"
    download.value.save_as(downloaded)
    view = parse_qs(urlsplit(page.url).query)
    exported = tmp_path / "export.html"
    done = subprocess.run(
        [*_lossboard_cli(), "export-report", "--db", str(sample_db), "--out", str(exported),
         "--model", view["model"][0], "--from", view["from"][0], "--to", view["to"][0],
         "--reference-from", view["ref_from"][0], "--reference-to", view["ref_to"][0]],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert downloaded.read_bytes() == exported.read_bytes()
    _assert_local_only(traffic)
