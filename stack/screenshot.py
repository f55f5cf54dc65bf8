"""A browser check of the ops view: open the Temporal Web UI, find a renewal by its search
attribute, open its page and save a screenshot (headless Debian Chromium driven by Playwright).

    python -m stack.screenshot --username demo-active --out docs/renewal-ui.png

Needs `pip install -e '.[browser]'` and Debian's `chromium` at /usr/bin/chromium.
"""

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's probe runs it: no background connections to a network that is not there.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    """Why the check cannot run here, or None when it can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[browser]')"
    return None


async def screenshot(ui_url: str, namespace: str, username: str, out: Path, timeout_ms: int = 30000) -> str:
    """Find the renewal of `username` by RenewalUsername, open it, save `out`; returns the page text."""
    from playwright.async_api import async_playwright

    query = quote(f"RenewalUsername='{username}'")
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        await page.goto(f"{ui_url}/namespaces/{namespace}/workflows?query={query}", timeout=timeout_ms)
        link = page.get_by_role("link", name=f"renewal-{username}").first
        await link.wait_for(timeout=timeout_ms)
        await link.click()
        # The static summary and the current details live under the "User Metadata" tab.
        await page.get_by_role("tab", name="User Metadata").click(timeout=timeout_ms)
        # Summary and details are markdown, each rendered in a frame of its own.
        summary = await _frame_text(page, f"service of {username}", timeout_ms / 1000)
        details = await _frame_text(page, "Last event", timeout_ms / 1000)
        out.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(out), full_page=True)
        text = await page.inner_text("body")
        await browser.close()
    return "\n".join((text, summary, details))


async def _frame_text(page: Any, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in page.frames:
            text = await frame.inner_text("body") if await frame.query_selector("body") else ""
            if needle in text:
                return str(text)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no frame showed {needle!r} in {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ui", default="http://127.0.0.1:8233")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--username", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/renewal-ui.png"))
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        raise SystemExit(f"browser check skipped: {missing}")
    asyncio.run(screenshot(args.ui, args.namespace, args.username, args.out))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
