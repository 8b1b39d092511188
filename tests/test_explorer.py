"""The registry's explorer pages, over a real registry on real sockets.

The first test reads the HTML with aiohttp on SQLite and PostgreSQL (search, the agent page's checks, tampering,
revocation, escaping, headers). The second drives headless Chromium (Playwright) through the same pages as a
person would, checks that nothing but the registry is contacted and no script runs, and saves screenshots under
tests/artifacts/.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from markupsafe import escape
from registry_support import LiveRegistry, bump, database, live_registry, new_org
from sqlalchemy import text

from guildnet.protocols.agentfacts import AgentFacts
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.receipts import TaskClaim, callee_sign, caller_countersign
from guildnet.registry.client import RegistryClient
from guildnet.registry.explorer import CSP, PAGE_SIZE
from guildnet.registry.server import REPUTATION

CHROMIUM = os.environ.get("GUILDNET_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
HOSTILE_NAME = "<script>alert('name')</script>"
HOSTILE_TEXT = "<img src=x onerror=\"alert('desc')\"> & \"quotes\" </td></table>"
DAYS = 8


def backdated_receipt(caller: SigningKey, callee: SigningKey, task_id: str, *, days_ago: float, success: bool,
                      skill: str) -> str:
    """A countersigned receipt for a task that ended ``days_ago`` days ago (history for the chart)."""
    ended = int((time.time() - days_ago * 86400) * 1000)
    claim = TaskClaim.model_validate({
        "task_id": task_id, "caller": caller.did, "callee": callee.did, "skill": skill,
        "input_sha256": hashlib.sha256(task_id.encode()).hexdigest(),
        "output_sha256": hashlib.sha256(b"out").hexdigest(),
        "started_at": ended - 50, "ended_at": ended, "status": "completed" if success else "failed"})
    return caller_countersign(callee_sign(claim, callee), caller, "success" if success else "failure")


TRANSLATE = {"id": "translate", "name": "Translate", "description": "Translate text between languages",
             "tags": ["text", "language"],
             "input_schema": {"type": "object", "properties": {"text": {"type": "string"},
                                                               "target": {"type": "string", "maxLength": 8}},
                              "required": ["text", "target"]},
             "output_schema": {"type": "object", "properties": {"text": {"type": "string"}}}}


class Scene:
    """Three organisations: acme (pre-trusted) calls beta's translator (mostly successes over DAYS days) and
    gamma's cheap translator (mostly failures); gamma also publishes an agent whose every text field is markup."""

    def __init__(self) -> None:
        self.acme, self.beta, self.gamma = new_org("Acme"), new_org("Beta Translations"), new_org("Gamma")
        self.planner_key, self.planner = self.acme.agent("planner", description="Plans work and delegates it")
        self.translator_key, self.translator = self.beta.agent(
            "translator", skills=[TRANSLATE, {"id": "summarise", "name": "Summarise"}],
            description="Careful human-grade translation")
        self.cheap_key, self.cheap = self.gamma.agent("cheap-translator", skills=[TRANSLATE],
                                                      description="Fast and cheap translation")
        self.hostile_key, hostile = self.gamma.agent("hostile", description=HOSTILE_TEXT, skills=[
            {"id": "xss", "name": HOSTILE_NAME, "description": HOSTILE_TEXT, "tags": ["<b>bold</b>"],
             "input_schema": {"type": "object", "description": "</pre><script>alert('schema')</script>"}}])
        self.hostile = bump(hostile, name=HOSTILE_NAME)
        self.receipts = 0

    async def populate(self, registry: LiveRegistry, client: RegistryClient) -> None:
        for key, facts in ((self.planner_key, self.planner), (self.translator_key, self.translator),
                           (self.cheap_key, self.cheap), (self.hostile_key, self.hostile)):
            await client.register(facts, key)
        for day in range(DAYS):
            for callee_key, ok in ((self.translator_key, day % 3 != 1), (self.cheap_key, day % 4 == 0)):
                token = backdated_receipt(self.planner_key, callee_key, f"task-{day}-{callee_key.did[-6:]}",
                                          days_ago=DAYS - day - 0.5, success=ok, skill="translate")
                await client.submit_receipt(token, self.planner_key)
                self.receipts += 1
        assert await registry.app[REPUTATION].refresh(force=True) is not None


async def fetch(session: aiohttp.ClientSession, url: str, status: int = 200) -> str:
    async with session.get(url) as response:
        body = await response.text()
        assert response.status == status, body[:500]
        assert response.content_type == "text/html"
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        return body


def agent_url(registry: LiveRegistry, facts: AgentFacts) -> str:
    return f"{registry.url}/agents/{quote(facts.id)}"


def names_listed(page: str) -> list[str]:
    return [html.unescape(n) for n in re.findall(r'<div class="name"><a [^>]*>([^<]*)</a>', page)]


async def test_pages_show_checked_facts_receipts_history_and_escape_everything(db_url: str) -> None:
    scene = Scene()
    async with live_registry(db_url, pretrusted_orgs=(scene.acme.key.did,), reputation_interval=3600) as registry, \
            RegistryClient(registry.url) as client, aiohttp.ClientSession() as session:
        await scene.populate(registry, client)

        # the list: every agent, escaped; search by skill, text, organisation; a bad cursor is a 400 page
        page = await fetch(session, registry.url + "/")
        assert sorted(names_listed(page)) == sorted([HOSTILE_NAME, "planner", "translator", "cheap-translator"])
        assert "<script" not in page and "<img" not in page and "<b>" not in page  # no markup of theirs survives
        assert str(escape(HOSTILE_TEXT))[:40] in page
        assert page.count('class="badge live"') == 4
        assert sorted(names_listed(await fetch(session, registry.url + "/?skill=translate"))) == [
            "cheap-translator", "translator"]
        assert names_listed(await fetch(session, registry.url + "/?q=careful")) == ["translator"]
        assert sorted(names_listed(await fetch(session, registry.url + "/?org=" + quote(scene.gamma.key.did)))) == [
            HOSTILE_NAME, "cheap-translator"]
        assert "Bad query" in await fetch(session, registry.url + "/?cursor=nonsense", 400)

        # the agent page: the registry's own checks, the receipts, the chart and its agreement with the API
        rep = await client.reputation(scene.translator.id)
        page = await fetch(session, agent_url(registry, scene.translator))
        assert "✓ signature verified" in page and "✓ inclusion proof verified" in page
        assert "Not revoked." in page and str(escape('"maxLength": 8')) in page  # skills with their schemas
        assert page.count('<tr class="receipt">') == DAYS and f"({DAYS} about this agent" in page
        titles = re.findall(r'<circle class="chart-point"[^>]*><title>([^<]*)</title>', page)
        assert len(titles) == DAYS  # one receipt a day: one point per (6-hour) bucket
        last_mean = float(re.search(r"mean ([0-9.]+)", titles[-1]).group(1))  # type: ignore[union-attr]
        assert last_mean == pytest.approx(rep.score, abs=2e-3)  # rebuilt history ends at the served score
        assert f'{rep.score:.2f}' in page and f"{rep.evidence:.1f} evidence" in page

        page = await fetch(session, agent_url(registry, scene.hostile))
        assert "<script" not in page and "<img" not in page and "<b>" not in page
        assert str(escape(HOSTILE_NAME)) in page and "No receipts yet" in page

        # tampering with the stored facts behind the registry's back shows as a failed check
        async with registry.store.engine.begin() as conn:
            await conn.execute(text("UPDATE agents SET facts = REPLACE(facts, 'Careful', 'Sloppy') WHERE id = :id"),
                               {"id": scene.translator.id})
        page = await fetch(session, agent_url(registry, scene.translator))
        assert "✗ signature does not verify" in page and "✓ signature verified" not in page
        assert "differ from its signed registration" in page and "Sloppy" in page

        # revocation is shown as permanent; an unknown agent is an HTML 404
        await client.revoke(scene.cheap.id, scene.cheap_key)
        page = await fetch(session, agent_url(registry, scene.cheap))
        assert 'class="badge revoked"' in page and "Revocation is permanent" in page
        assert "Not found" in await fetch(session, f"{registry.url}/agents/{quote(SigningKey.generate().did)}", 404)

        # the log page: the signed head the API serves, the newest entries with their signers checked
        head = await client.log_head()
        page = await fetch(session, registry.url + "/log")
        assert "✓ checkpoint signature verified" in page and f'<dd class="tree-size">{head.size}</dd>' in page
        assert head.size == 4 + scene.receipts + 1 and head.root.hex() in page
        assert page.count('<tr class="log-entry">') == page.count('title="signature verified">✓') == head.size
        assert page.count('">planner</a>') == 2 + scene.receipts  # its registration (agent, signer), every receipt
        assert page.index("kind-revoke") < page.index("kind-receipt") < page.index("kind-register")  # newest first
        page = await fetch(session, registry.url + "/log?start=10")
        assert page.count('<tr class="log-entry">') == head.size - 10 and 'href="/log?start=0">older' in page
        await fetch(session, registry.url + "/log?start=x", 400)

    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client, \
            aiohttp.ClientSession() as session:
        page = await fetch(session, registry.url + "/")  # no pre-trusted organisations: says so, shows no score
        assert "computes no reputation" in page and "not computed here" in page
        page = await fetch(session, agent_url(registry, scene.translator))
        assert "every rater counted with weight 1" in page

        # pages follow the API's cursor, keeping the filters: 3 agents left (one revoked) + 18 = 21 live ones
        for i in range(18):
            key, facts = scene.acme.agent(f"filler-{i:02d}")
            await client.register(facts, key)
        page = await fetch(session, registry.url + "/?live=1")
        assert len(names_listed(page)) == PAGE_SIZE and "filler-16" in names_listed(page)
        next_url = html.unescape(re.search(r'<a class="next" href="([^"]+)"', page).group(1))  # type: ignore[union-attr]
        assert "live=1" in next_url and "cursor=" in next_url
        page = await fetch(session, registry.url + next_url)
        assert names_listed(page) == ["filler-17"] and 'class="next"' not in page and "« first page" in page


def chromium_or_skip() -> None:
    """The browser test needs Playwright's Python package and a Chromium binary; in CI their absence fails."""
    problem = None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        problem = "the 'playwright' package is not installed (pip install -e '.[test]'; no 'playwright install')"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"no Chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver, or set GUILDNET_CHROMIUM)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


async def test_a_browser_searches_opens_an_agent_and_reads_the_log(tmp_path: Path) -> None:
    chromium_or_skip()
    from playwright.async_api import ConsoleMessage, Dialog, Request, async_playwright

    scene = Scene()
    async with database("sqlite", tmp_path) as db_url, \
            live_registry(db_url, pretrusted_orgs=(scene.acme.key.did,), reputation_interval=3600) as registry, \
            RegistryClient(registry.url) as client, async_playwright() as playwright:
        await scene.populate(registry, client)
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, timeout=30_000)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            elsewhere: list[str] = []
            complaints: list[str] = []
            dialogs: list[str] = []

            def on_request(request: Request) -> None:
                if not request.url.startswith(registry.url + "/"):
                    elsewhere.append(request.url)

            def on_console(message: ConsoleMessage) -> None:
                if message.type in ("error", "warning"):  # CSP violations are reported here
                    complaints.append(message.text)

            def on_dialog(dialog: Dialog) -> None:
                dialogs.append(dialog.message)

            page.on("request", on_request)
            page.on("console", on_console)
            page.on("dialog", on_dialog)

            await page.goto(registry.url + "/")
            assert await page.locator("tr.agent-row").count() == 4
            assert HOSTILE_NAME in await page.locator("table.agents").inner_text()  # shown as text, not run

            await page.fill("input[name=skill]", "translate")
            await page.click("form.search button")
            await page.wait_for_url("**/?*skill=translate*")
            rows = page.locator("tr.agent-row")
            assert await rows.count() == 2
            await page.get_by_role("link", name="translator", exact=True).click()
            await page.wait_for_url(f"**/agents/{quote(scene.translator.id)}")

            assert await page.locator("h1").inner_text() == "translator live"
            await page.get_by_text("✓ signature verified").wait_for()
            await page.get_by_text("✓ inclusion proof verified").wait_for()
            points = page.locator("svg.chart circle.chart-point")
            assert await points.count() == DAYS
            assert await page.locator("svg.chart polyline.mean").get_attribute("points")
            box = await page.locator("svg.chart").bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 100  # the CSS applied
            assert await page.locator("tr.receipt").count() == DAYS
            await page.get_by_text("Input schema").first.click()  # <details>: no script needed
            assert "maxLength" in await page.locator(".skill pre").first.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "explorer-agent.png"), full_page=True)

            await page.get_by_role("link", name="Transparency log").first.click()
            await page.wait_for_url("**/log")
            head = await client.log_head()
            assert await page.locator("dd.tree-size").inner_text() == str(head.size)
            await page.get_by_text("✓ checkpoint signature verified").wait_for()
            assert await page.locator("tr.log-entry").count() == head.size
            await page.screenshot(path=str(ARTIFACTS / "explorer-log.png"), full_page=True)

            await page.goto(agent_url(registry, scene.hostile))
            assert await page.locator("h1").inner_text() == f"{HOSTILE_NAME} live"
            await page.get_by_text("Input schema").first.click()
            assert "</pre><script>" in await page.locator(".skill pre").first.inner_text()
            await page.screenshot(path=str(ARTIFACTS / "explorer-hostile.png"), full_page=True)
            await page.goto(registry.url + "/")
            await page.screenshot(path=str(ARTIFACTS / "explorer-list.png"), full_page=True)

            assert elsewhere == [] and dialogs == [] and complaints == []
        finally:
            await browser.close()
