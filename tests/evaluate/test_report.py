"""report.html from its template: every piece of text escaped once, numbers right-aligned, figures embedded."""

from __future__ import annotations

import base64
import html

from expertkit.evaluate.report import Figure, Section, Table, write_report

NAME = 'R&D <notes> "v2" it\'s.pdf'  # a document name with every character HTML gives a meaning to


def test_the_report_escapes_text_once_and_embeds_its_figures(tmp_path):
    png = b"\x89PNG\r\n\x1a\n not really a picture"
    section = Section(
        NAME,
        paragraphs=[f"from {NAME}"],
        bullets=["a &amp; b"],  # already looks escaped: still escaped, once
        tables=[Table(["document", "hits"], [[NAME, "12"], ["other", 3], ["none", "85%"]], caption=NAME)],
        figures=[Figure("hits", f"hits in {NAME}", png)],
    )
    report = write_report(tmp_path, f"expertkit eval: {NAME}", [section], callout=f"read {NAME}")
    page = report.read_text(encoding="utf-8")
    escaped = html.escape(NAME).replace("&#x27;", "&#39;").replace("&quot;", "&#34;")  # markupsafe's spelling
    assert NAME not in page and "<notes>" not in page
    for text in (f"<title>expertkit eval: {escaped}</title>", f"<h2>{escaped}</h2>", f"<p>from {escaped}</p>",
                 f"<caption>{escaped}</caption>", f"<td>{escaped}</td>", f"read {escaped}</div>",
                 f'alt="hits in {escaped}"', f"<figcaption>hits in {escaped}</figcaption>"):  # fmt: skip
        assert text in page, text
    assert "<li>a &amp;amp; b</li>" in page and "&amp;amp;amp;" not in page
    assert '<td class="num">12</td>' in page and '<td class="num">3</td>' in page and '<td class="num">85%</td>' in page
    assert "<th>hits</th>" in page and "<td>other</td>" in page
    assert f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}" in page
    assert (tmp_path / "hits.png").read_bytes() == png and not list(tmp_path.glob("*.tmp"))
