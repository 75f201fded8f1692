"""The example portal in a real browser: Debian's Chromium driven by Playwright, clicking
through the sign-in on the embedded simulator's consent page like a user would."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

import flask_spark.views
from flask_spark.testing import ACCOUNTS, LISTINGS, data

from .browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ROOT, PortalServer, require_chromium
from .redis_server import free_port

pytestmark = pytest.mark.slow  # a real Chromium


@pytest.fixture(autouse=True, scope="module")
def _chromium() -> None:
    require_chromium()  # before the module's other fixtures start a browser


JANE = ACCOUNTS[0]
SAM = ACCOUNTS[1]
DOCS_STATIC = ROOT / "docs" / "_static"
SIGNED_OUT = "You have signed out. This portal no longer has access to your Flexmls account."


def save_screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot to ``test-artifacts/`` and refresh the docs' copy (Chromium
    renders the same page to the same bytes, so it only changes when the page does)."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    page.screenshot(path=str(shot), full_page=full_page)
    DOCS_STATIC.mkdir(parents=True, exist_ok=True)
    draft = DOCS_STATIC / f".{name}-{os.getpid()}.png"
    shutil.copyfile(shot, draft)
    os.replace(draft, DOCS_STATIC / name)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalServer]:
    server = PortalServer(tmp_path_factory.mktemp("example-instance"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies) per test."""
    context = chromium.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def listing_id(index: int) -> str:
    return str(LISTINGS[index]["StandardFields"]["ListingId"])


def approve(page: Page, portal: PortalServer, user: str | None = None) -> None:
    """On the simulator's consent page: pick ``user`` (the first account by default) and
    click Approve."""
    expect(page).to_have_url(re.compile("^" + re.escape(portal.simulator_url) + "/"))
    expect(page.get_by_role("heading", name="Authorize application")).to_be_visible()
    if user is not None:
        page.get_by_label("Sign in as").select_option(label=user)
    page.get_by_role("button", name="Approve").click()


def sign_in(page: Page, portal: PortalServer) -> None:
    """From the home page, through the consent page, to the dashboard."""
    page.goto(portal.url + "/")
    page.get_by_role("link", name="Sign in with Flexmls").click()
    approve(page, portal)
    expect(page).to_have_url(portal.url + "/dashboard")
    expect(page.get_by_role("heading", name=JANE["Name"])).to_be_visible()


def expect_listings_page(page: Page, number: int) -> None:
    """The table shows page ``number`` of the simulator's 57 listings, 10 a page."""
    expect(page.get_by_text(f"Page {number} of 6", exact=True)).to_be_visible()
    rows = page.locator("table.listings tbody tr")
    expect(rows).to_have_count(10 if number < 6 else 7)
    expect(rows.first.locator("td").first).to_have_text(listing_id((number - 1) * 10))


def last_access_token(portal: PortalServer) -> str:
    """The access token of the portal's most recent API call."""
    header = portal.platform.requests_for("data")[-1].headers["Authorization"]
    return header.split(" ", 1)[1]


def test_sign_in_with_approve_shows_the_dashboard(page: Page, portal: PortalServer) -> None:
    page.goto(portal.url + "/")
    expect(page.get_by_role("note")).to_contain_text(
        "this portal talks to Flask-Spark's built-in Spark simulator, not to Flexmls"
    )
    page.get_by_role("link", name="Sign in with Flexmls").click()

    approve(page, portal)

    expect(page).to_have_url(portal.url + "/dashboard")
    expect(page.get_by_role("heading", name="Jane Agent")).to_be_visible()
    account = page.locator(".account dl")
    expect(account).to_contain_text("Prairie Home Realty")
    expect(account).to_contain_text("Red River Valley MLS")
    expect(account).to_contain_text(JANE["Emails"][0]["Address"])
    expect_listings_page(page, 1)
    first = LISTINGS[0]["StandardFields"]
    expect(page.locator("table.listings tbody tr").first).to_contain_text(
        first["UnparsedFirstLineAddress"]
    )
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("note")).to_contain_text("Demo mode")

    save_screenshot(page, "dashboard.png")


def test_page_links_walk_the_listings(page: Page, portal: PortalServer) -> None:
    sign_in(page, portal)

    page.get_by_role("link", name="Page 2", exact=True).click()
    expect(page).to_have_url(portal.url + "/dashboard?page=2")
    expect_listings_page(page, 2)

    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(portal.url + "/dashboard?page=3")
    expect_listings_page(page, 3)

    page.get_by_role("link", name="← Previous").click()
    expect_listings_page(page, 2)
    expect(page.get_by_role("heading", name="Jane Agent")).to_be_visible()


def test_a_signed_out_visit_signs_in_first_and_comes_back(
    page: Page, portal: PortalServer
) -> None:
    page.goto(portal.url + "/dashboard?page=4")

    approve(page, portal, user=f"{SAM['Name']} (Member)")

    expect(page).to_have_url(portal.url + "/dashboard?page=4")
    expect(page.get_by_role("heading", name=SAM["Name"])).to_be_visible()
    expect_listings_page(page, 4)


def test_deny_shows_the_cancelled_page(page: Page, portal: PortalServer) -> None:
    page.goto(portal.url + "/")
    page.get_by_role("link", name="Sign in with Flexmls").click()
    expect(page.get_by_role("heading", name="Authorize application")).to_be_visible()

    page.get_by_role("button", name="Deny").click()

    expect(page).to_have_url(re.compile("^" + re.escape(portal.url) + "/callback\\?"))
    expect(page.get_by_role("heading", name="Sign-in cancelled")).to_be_visible()
    expect(page.get_by_text("nothing was shared with this site")).to_be_visible()
    expect(page.get_by_role("note")).to_contain_text("Demo mode")

    # Changing one's mind works from there.
    page.get_by_role("link", name="Sign in with Flexmls").click()
    approve(page, portal)
    expect(page.get_by_role("heading", name="Jane Agent")).to_be_visible()


def test_a_failed_sign_in_shows_a_friendly_page(page: Page, portal: PortalServer) -> None:
    page.goto(portal.url + "/")
    page.get_by_role("link", name="Sign in with Flexmls").click()
    expect(page.get_by_role("heading", name="Authorize application")).to_be_visible()
    portal.platform.fail_next("grant", 503)

    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_role("heading", name="Sign-in did not finish")).to_be_visible()
    expect(page.get_by_text("Flexmls could not be reached")).to_be_visible()
    page.get_by_role("link", name="Try again").click()
    approve(page, portal)
    expect(page.get_by_role("heading", name="Jane Agent")).to_be_visible()


def test_a_sign_in_finished_too_late_shows_the_expired_page(
    page: Page, portal: PortalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    page.goto(portal.url + "/")
    page.get_by_role("link", name="Sign in with Flexmls").click()
    expect(page.get_by_role("heading", name="Authorize application")).to_be_visible()
    # The user leaves the consent page open for an hour: move Flask-Spark's clock for
    # pending sign-ins (10 minutes by default) forward rather than waiting.
    later = types.SimpleNamespace(time=lambda: time.time() + 3600)
    monkeypatch.setattr(flask_spark.views, "time", later)

    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_role("heading", name="Your sign-in expired")).to_be_visible()
    monkeypatch.undo()
    page.get_by_role("link", name="Sign in again").click()
    approve(page, portal)
    expect(page.get_by_role("heading", name="Jane Agent")).to_be_visible()


def test_token_expiry_mid_browsing_is_invisible(page: Page, portal: PortalServer) -> None:
    sign_in(page, portal)
    before = portal.platform.stats

    portal.platform.expire_all()
    page.get_by_role("link", name="Page 2", exact=True).click()

    expect(page).to_have_url(portal.url + "/dashboard?page=2")
    expect(page.get_by_role("heading", name="Jane Agent")).to_be_visible()
    expect_listings_page(page, 2)
    after = portal.platform.stats
    assert after.refreshes == before.refreshes + 1
    assert after.authorizations == before.authorizations  # no new sign-in


def test_an_outage_shows_a_try_again_later_page(page: Page, portal: PortalServer) -> None:
    sign_in(page, portal)
    portal.platform.fail_next("data", 500)

    page.get_by_role("link", name="Page 2", exact=True).click()

    expect(page.get_by_role("heading", name="Temporarily unavailable")).to_be_visible()
    expect(page.get_by_text("Flexmls could not be reached")).to_be_visible()
    page.reload()  # a moment later it works, still signed in
    expect(page.get_by_role("heading", name="Jane Agent")).to_be_visible()
    expect_listings_page(page, 2)


def test_a_refused_refresh_signs_in_again_and_returns_to_the_page(
    page: Page, portal: PortalServer
) -> None:
    sign_in(page, portal)
    page.get_by_role("link", name="Page 2", exact=True).click()
    expect_listings_page(page, 2)
    platform = portal.platform
    platform.revoke_refresh_token(platform.grant_for(last_access_token(portal)).refresh_token)
    platform.expire_all()
    before = platform.stats

    page.reload()

    approve(page, portal)
    expect(page).to_have_url(portal.url + "/dashboard?page=2")
    expect(page.get_by_role("status")).to_have_text(
        "Your Flexmls session had ended, so you were asked to sign in again."
    )
    expect(page.get_by_role("heading", name="Jane Agent")).to_be_visible()
    expect_listings_page(page, 2)
    after = platform.stats
    assert after.rejected_refreshes == before.rejected_refreshes + 1
    assert after.code_exchanges == before.code_exchanges + 1


def test_the_back_button_after_signing_in_goes_on_to_the_portal(
    page: Page, portal: PortalServer
) -> None:
    """Back from the dashboard to the consent page, and Approve again: the callback's
    sign-in link was used already, and the browser, signed in, goes on to the portal."""
    sign_in(page, portal)

    page.go_back()
    approve(page, portal)

    expect(page).to_have_url(re.compile("^" + re.escape(portal.url) + "/(dashboard)?$"))
    expect(page.get_by_role("heading", name=JANE["Name"])).to_be_visible()
    expect(page.get_by_text("not recognised")).to_have_count(0)


def test_sign_out(page: Page, portal: PortalServer) -> None:
    sign_in(page, portal)
    token = last_access_token(portal)

    page.get_by_role("button", name="Sign out").click()

    expect(page).to_have_url(portal.url + "/")
    expect(page.get_by_role("status")).to_have_text(SIGNED_OUT)
    expect(page.get_by_role("link", name="Sign in with Flexmls")).to_be_visible()
    with pytest.raises(KeyError):  # revoked at the platform, not just forgotten
        portal.platform.grant_for(token)
    page.goto(portal.url + "/dashboard")
    expect(page.get_by_role("heading", name="Authorize application")).to_be_visible()


def test_a_vow_portal_signs_consumers_in_on_its_own(page: Page, portal: PortalServer) -> None:
    page.goto(portal.url + "/")
    page.get_by_role("link", name="Redriver Home Search").click()
    expect(page).to_have_url(portal.url + "/portal/redriver/")
    expect(page.get_by_role("note")).to_contain_text("Demo mode")
    page.get_by_role("link", name="Sign in with Flexmls").click()
    expect(page.locator(".portal")).to_have_text("redriver")  # the consent page's portal
    # The portal's own consumers sign in to it, not the agents.
    consumers = portal.platform.consumers("redriver")
    options = page.get_by_label("Sign in as").locator("option")
    expect(options).to_have_text([f"{c['Name']} (VowConsumer)" for c in consumers])

    alex = consumers[1]
    approve(page, portal, user=f"{alex['Name']} (VowConsumer)")

    expect(page).to_have_url(portal.url + "/portal/redriver/")
    expect(page.get_by_role("heading", name=f"Welcome, {alex['Name']}")).to_be_visible()
    grant = portal.platform.grant_for(last_access_token(portal))
    assert (grant.role, grant.portal) == ("vow", "redriver")
    # The listings of the agent whose portal it is, and no one else's.
    owner = data.portal("redriver")["OwnerId"]
    theirs = [item for item in LISTINGS if item["StandardFields"]["ListAgentId"] == owner]
    expect(page.locator("caption")).to_contain_text(f"({len(theirs)} found)")
    expect(page.locator("table.listings tbody tr")).to_have_count(10)
    first_page = [str(item["StandardFields"]["ListingId"]) for item in theirs[:10]]
    expect(page.locator("table.listings tbody tr td:first-child")).to_have_text(first_page)
    page.get_by_role("link", name="Page 2", exact=True).click()
    expect(page).to_have_url(portal.url + "/portal/redriver/?page=2")
    expect(page.locator("table.listings tbody tr")).to_have_count(len(theirs) - 10)

    # A listing's page inside the portal, with its photos.
    page.locator("table.listings tbody tr").first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(re.escape(portal.url + "/portal/redriver/listings/")))
    expect(page.locator(".hero-photo img")).to_be_visible()
    page.get_by_role("link", name="Back to the listings").click()
    expect(page).to_have_url(portal.url + "/portal/redriver/")

    # Signed in to one portal only: not to the other one, nor to the agent portal.
    page.goto(portal.url + "/portal/prairie/")
    expect(page.get_by_role("link", name="Sign in with Flexmls")).to_be_visible()
    page.goto(portal.url + "/")
    expect(page.get_by_role("link", name="Sign in with Flexmls")).to_be_visible()

    page.goto(portal.url + "/portal/redriver/")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(portal.url + "/portal/")
    expect(page.get_by_role("status")).to_have_text(SIGNED_OUT)
    page.get_by_role("link", name="Redriver Home Search").click()
    expect(page.get_by_role("link", name="Sign in with Flexmls")).to_be_visible()


def fields_of_rows(page: Page, column: int) -> list[str]:
    return page.locator(f"table.listings tbody tr td:nth-child({column})").all_text_contents()


def price(text: str) -> int:
    return int(text.replace("$", "").replace(",", ""))


def test_search_by_city_price_and_beds_then_sort(page: Page, portal: PortalServer) -> None:
    sign_in(page, portal)
    page.get_by_label("City").fill("west fargo")  # any case: cities are stored capitalized
    page.get_by_label("Min price").fill("150,000")
    page.get_by_label("Max price").fill("400000")
    page.get_by_label("Beds").select_option(label="2+")
    page.get_by_role("button", name="Search").click()

    expected = [
        item["StandardFields"]
        for item in LISTINGS
        if item["StandardFields"]["City"] == "West Fargo"
        and 150_000 <= item["StandardFields"]["ListPrice"] <= 400_000
        and item["StandardFields"]["BedsTotal"] >= 2
    ]
    assert 0 < len(expected) <= 10
    expect(page.locator("caption")).to_contain_text(f"({len(expected)} found)")
    expect(page.locator("table.listings tbody tr td:first-child")).to_have_text(
        [str(f["ListingId"]) for f in expected]
    )
    # The form shows the search it ran.
    expect(page.get_by_label("City")).to_have_value("West Fargo")
    expect(page.get_by_label("Min price")).to_have_value("150000")

    # The Price column sorts low to high, then high to low, keeping the search.
    page.get_by_role("link", name="Price", exact=True).click()
    expect(page.get_by_role("columnheader", name="Price ▲")).to_have_attribute(
        "aria-sort", "ascending"
    )
    ascending = sorted(f["ListPrice"] for f in expected)
    assert [price(t) for t in fields_of_rows(page, 4)] == ascending
    page.get_by_role("link", name="Price ▲").click()
    expect(page.get_by_role("columnheader", name="Price ▼")).to_be_visible()
    assert [price(t) for t in fields_of_rows(page, 4)] == ascending[::-1]
    assert "city=West+Fargo" in page.url
    assert "sort=-price" in page.url

    # Sorting every listing by beds, most first, across pages.
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Sort by").select_option(label="Most beds")
    page.get_by_role("button", name="Search").click()
    beds = [int(t) for t in fields_of_rows(page, 5)]
    assert beds == sorted(beds, reverse=True)
    assert beds[0] == max(item["StandardFields"]["BedsTotal"] for item in LISTINGS)
    expect(page.locator("caption")).to_contain_text(f"({len(LISTINGS)} found)")


def test_a_search_that_finds_nothing_says_so(page: Page, portal: PortalServer) -> None:
    sign_in(page, portal)
    page.get_by_label("City").fill("Fargo' Or ListPrice Gt '0")  # stays a value
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No listings match this search.")).to_be_visible()
    expect(page.get_by_text("Page 1 of 1", exact=True)).to_be_visible()


def test_my_listings_are_the_agents_own(page: Page, portal: PortalServer) -> None:
    sign_in(page, portal)
    page.get_by_role("link", name="My listings").click()
    expect(page).to_have_url(portal.url + "/dashboard?mine=1")
    mine = [item for item in LISTINGS if item["StandardFields"]["ListAgentId"] == JANE["Id"]]
    expect(page.locator("caption")).to_contain_text(f"My listings ({len(mine)} found)")
    expect(page.locator("table.listings tbody tr td:first-child")).to_have_text(
        [str(item["StandardFields"]["ListingId"]) for item in mine[:10]]
    )
    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(portal.url + "/dashboard?page=2&mine=1")
    expect(page.locator("table.listings tbody tr")).to_have_count(len(mine) - 10)


def test_a_page_past_the_last_shows_the_last(page: Page, portal: PortalServer) -> None:
    sign_in(page, portal)
    page.goto(portal.url + "/dashboard?page=999")
    expect(page).to_have_url(portal.url + "/dashboard?page=6")
    expect_listings_page(page, 6)


def test_a_listing_page_shows_its_photos(page: Page, portal: PortalServer) -> None:
    sign_in(page, portal)
    first = LISTINGS[0]
    page.get_by_role("link", name=first["StandardFields"]["UnparsedFirstLineAddress"]).click()
    expect(page).to_have_url(portal.url + f"/listings/{first['Id']}")
    fields = first["StandardFields"]
    expect(page.get_by_role("heading", level=1)).to_have_text(fields["UnparsedFirstLineAddress"])
    expect(page.locator(".price")).to_have_text(f"${fields['ListPrice']:,}")
    photos = data.photos(first["Id"], portal.simulator_url)
    hero = page.locator(".hero-photo img")
    expect(hero).to_have_attribute("alt", photos[0]["Caption"])
    thumbnails = page.locator("ul.photos img")
    expect(thumbnails).to_have_count(len(photos) - 1)
    # Every picture was fetched from the simulator and drawn (not a broken image).
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    )
    save_screenshot(page, "listing.png")

    page.goto(portal.url + "/listings/20240115000000000000000000")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()


def test_unknown_pages_get_the_portals_404_page(page: Page, portal: PortalServer) -> None:
    response = page.goto(portal.url + "/no/such/page")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.get_by_role("link", name="Agent Portal")).to_be_visible()  # the site header
    expect(page.get_by_role("link", name="Back to the home page")).to_be_visible()


def no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"scrollWidth {width[0]} > innerWidth {width[1]}"


def test_a_phone_sized_screen_never_scrolls_sideways(
    chromium: Browser, portal: PortalServer
) -> None:
    context = chromium.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto(portal.url + "/")
        no_horizontal_scroll(page)
        page.get_by_role("link", name="Sign in with Flexmls").click()
        expect(page.get_by_role("heading", name="Authorize application")).to_be_visible()
        no_horizontal_scroll(page)  # the simulator's consent page too
        page.get_by_role("button", name="Approve").click()
        expect(page).to_have_url(portal.url + "/dashboard")
        expect(page.locator("table.listings tbody tr")).to_have_count(10)
        no_horizontal_scroll(page)
        # Each row is a card with its own labels.
        expect(page.locator("table.listings thead")).to_have_css("position", "absolute")
        page.locator("nav.tabs").evaluate("tabs => tabs.scrollIntoView()")
        save_screenshot(page, "phone.png", full_page=False)
        page.locator("table.listings tbody tr").first.get_by_role("link").click()
        expect(page.locator(".hero-photo img")).to_be_visible()
        no_horizontal_scroll(page)
        page.goto(portal.url + "/no/such/page")
        no_horizontal_scroll(page)
    finally:
        context.close()


def test_gunicorn_workers_share_one_simulator(chromium: Browser, tmp_path: Path) -> None:
    port, simulator_port = free_port(), free_port()
    log = ARTIFACTS / f"example-gunicorn-{port}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SPARK_", "VOW_", "FLASK_"))
        and key not in {"REDIS_URL", "SECRET_KEY", "PORT"}
    }
    env.update(
        PORT=str(port),
        SIMULATOR_PORT=str(simulator_port),
        INSTANCE_PATH=str(tmp_path / "instance"),
        PYTHONPATH=str(ROOT),
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "3",
        "--no-control-socket",
        "example_app:create_app()",
    ]
    with log.open("wb") as output:
        # Run from an empty directory, so no .env of the checkout is read.
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=output)
    try:
        wait_for_lines(log, "Demo mode:", 3, process)
        text = log.read_text()
        assert text.count("Demo mode: started the built-in Spark simulator") == 1
        assert text.count("Demo mode: using the built-in Spark simulator") == 2

        context = chromium.new_context()
        try:
            page = context.new_page()
            url = f"http://127.0.0.1:{port}"
            page.goto(url + "/")
            page.get_by_role("link", name="Sign in with Flexmls").click()
            expect(page.get_by_role("heading", name="Authorize application")).to_be_visible()
            page.get_by_role("button", name="Approve").click()
            expect(page).to_have_url(url + "/dashboard")
            for number in (2, 3, 4, 5, 6, 1):  # served by whichever worker is free
                page.goto(f"{url}/dashboard?page={number}")
                expect(page.get_by_role("heading", name="Jane Agent")).to_be_visible()
                expect_listings_page(page, number)
        finally:
            context.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_for_lines(path: Path, text: str, count: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until ``path`` holds ``count`` lines with ``text`` (every worker booted)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{path.read_text()}")
        if path.read_text().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"gunicorn workers did not all boot:\n{path.read_text()}")
