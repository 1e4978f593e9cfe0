"""The browser harness and the vendored diff renderer (diff2html-ui, highlight.js bundled).

A tiny static site under the web app's CSP renders a unified diff with Diff2HtmlUI: the
renderer must work with scripts from 'self' only (no inline script, no eval), and the
harness must notice a CSP violation and a page's uncaught error.
"""

from __future__ import annotations

import html
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from openjules.testing.server import ThreadedUvicorn
from tests.web.browser_support import VENDOR_DIR, PageErrors, PageProblem, save_screenshot

# The web app's policy, and stricter on styles: the renderer needs no inline style either.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

DIFF = "\n".join(
    [
        "diff --git a/src/greet.py b/src/greet.py",
        "index 3b18e51..a9c2f0d 100644",
        "--- a/src/greet.py",
        "+++ b/src/greet.py",
        "@@ -1,4 +1,6 @@",
        " def greet(name):",
        '-    return "Hello " + name',
        '+    """Greets <name> & friends."""',
        '+    return f"Hello, {name}!"',
        " ",
        "+",
        ' print(greet("world"))',
        "diff --git a/NOTES.md b/NOTES.md",
        "new file mode 100644",
        "index 0000000..e69de29",
        "--- /dev/null",
        "+++ b/NOTES.md",
        "@@ -0,0 +1 @@",
        "+# Notes",
        "",
    ]
)

RENDER_JS = """\
document.addEventListener("DOMContentLoaded", () => {
  const target = document.getElementById("diff");
  const source = document.getElementById("diff-source").textContent;
  const ui = new Diff2HtmlUI(target, source, {
    drawFileList: true,
    fileListToggle: false,
    matching: "lines",
    outputFormat: "line-by-line",
    highlight: true,
  });
  ui.draw();
  ui.highlightCode();
  document.body.dataset.rendered = "yes";
});
"""

THROW_JS = 'document.addEventListener("DOMContentLoaded", () => { throw new Error("boom"); });\n'


def page_html(body: str, scripts: list[str]) -> str:
    tags = "\n".join(f'<script src="{src}"></script>' for src in scripts)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>diff2html harness</title>
<link rel="stylesheet" href="/static/vendor/highlight.js/github.min.css">
<link rel="stylesheet" href="/static/vendor/diff2html/diff2html.min.css">
{tags}
</head>
<body>
{body}
</body>
</html>
"""


def make_app(_port: int) -> ASGIApp:
    def script(path: str, source: str) -> Route:
        async def endpoint(_request: Request) -> Response:
            return Response(source, media_type="text/javascript")

        return Route(path, endpoint)

    async def diff_page(_request: Request) -> HTMLResponse:
        body = f'<pre id="diff-source" hidden>{html.escape(DIFF)}</pre>\n<div id="diff"></div>'
        scripts = ["/static/vendor/diff2html/diff2html-ui.min.js", "/static/render.js"]
        return HTMLResponse(page_html(body, scripts), headers={"Content-Security-Policy": CSP})

    async def inline_page(_request: Request) -> HTMLResponse:
        body = '<script>document.title = "inline ran";</script>\n<p id="done">done</p>'
        return HTMLResponse(
            page_html(body, ["/static/throw.js"]), headers={"Content-Security-Policy": CSP}
        )

    return Starlette(
        routes=[
            Route("/diff", diff_page),
            Route("/inline", inline_page),
            script("/static/render.js", RENDER_JS),
            script("/static/throw.js", THROW_JS),
            Mount("/static/vendor", app=StaticFiles(directory=VENDOR_DIR)),
        ]
    )


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadedUvicorn(make_app, name="web-harness-site")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_diff2html_renders_a_highlighted_diff_under_the_csp(site: str, page: Page) -> None:
    response = page.goto(f"{site}/diff")
    assert response is not None
    assert response.headers["content-security-policy"] == CSP
    expect(page.locator("body[data-rendered=yes]")).to_have_count(1)

    files = page.locator(".d2h-file-list .d2h-file-name")
    expect(files).to_have_text(["src/greet.py", "NOTES.md"])
    greet = page.locator(".d2h-file-list li", has_text="src/greet.py")
    expect(greet.locator(".d2h-lines-added")).to_have_text("+3")
    expect(greet.locator(".d2h-lines-deleted")).to_have_text("-1")
    notes = page.locator(".d2h-file-list li", has_text="NOTES.md")
    expect(notes.locator(".d2h-lines-added")).to_have_text("+1")
    expect(notes.locator(".d2h-lines-deleted")).to_have_text("-0")

    wrapper = page.locator(".d2h-file-wrapper", has_text="src/greet.py")
    code = "td:not(.d2h-code-linenumber)"
    expect(wrapper.locator(f"{code}.d2h-ins")).to_have_count(3)
    expect(wrapper.locator(f"{code}.d2h-del")).to_have_count(1)
    # highlight.js ran (Python, from the file name) and the diff's text stayed text.
    expect(wrapper.locator(".d2h-code-line-ctn.hljs.python").first).to_be_visible()
    keyword = wrapper.locator(".hljs-keyword", has_text="def").first
    expect(keyword).to_be_visible()
    # The theme colours tokens (diff2html.min.css does not); the line backgrounds stay.
    expect(keyword).to_have_css("color", "rgb(215, 58, 73)")
    expect(wrapper.locator(f"{code}.d2h-ins .d2h-code-line-ctn").first).to_have_css(
        "background-color", "rgba(0, 0, 0, 0)"
    )
    expect(wrapper.locator(code, has_text='"""Greets <name> & friends."""')).to_have_count(1)
    assert page.title() == "diff2html harness"

    shot = save_screenshot(page, "harness-diff2html")
    assert shot.name == "harness-diff2html-1280x800.png"
    assert shot.stat().st_size > 0


def test_the_harness_sees_csp_violations_and_page_errors(
    site: str, page: Page, page_errors: PageErrors
) -> None:
    page_errors.allow(r"Content Security Policy")
    page_errors.allow(r"\bboom\b")
    page.goto(f"{site}/inline")
    expect(page.locator("#done")).to_have_text("done")
    page.evaluate("0")  # a round trip: the page's events so far are delivered

    assert page.title() == "diff2html harness", "the inline script must not have run"
    assert page_errors.matching(r"violates the following Content Security Policy directive")
    assert [p.kind for p in page_errors.matching(r"\bboom\b")] == ["pageerror"]
    assert page_errors.unexpected() == []


def test_page_errors_fail_unless_allowed() -> None:
    errors = PageErrors()
    errors.problems.append(
        PageProblem("console", "Failed to load resource", "http://x/favicon.ico")
    )
    errors.check()  # Chromium's own favicon request: never unexpected
    errors.problems.append(PageProblem("console", "Refused to load the script", "http://x/"))
    errors.problems.append(PageProblem("pageerror", "Error: boom", "http://x/"))
    errors.allow(r"\bboom\b")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)1 unexpected error.*Refused to load"):
        errors.check()
    errors.check()  # each problem fails once
