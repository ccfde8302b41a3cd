"""Every relative link in the README and the docs leads somewhere: a file, and its heading."""

import re

import pytest
from live import ROOT

PAGES = [
    ROOT / "README.md",
    ROOT / "deploy" / "README.md",
    ROOT / "bench" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slug(heading):
    """Return the anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page):
    """Return the anchors of a page's headings."""
    text = FENCE.sub("", page.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def links(page):
    """Return the relative links of a page, outside code blocks."""
    text = FENCE.sub("", page.read_text())
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    """Each link names a file that exists, and a heading of it when it has an anchor."""
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and anchor not in anchors(linked)):
            broken.append(target)
    assert broken == []


def test_a_link_to_a_missing_heading_is_caught(tmp_path):
    """The check itself: a page linking to a heading it lacks is found out."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Secrets at rest, and `JWT_SECRET_KEY`\n")
    assert "secrets-at-rest-and-jwt_secret_key" in anchors(page)
    assert "nowhere" not in anchors(page)
