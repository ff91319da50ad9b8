"""The HTML ladders of ``--ladder-dir`` in a real browser (headless Chromium): the index links every
ladder, a ladder page shows the outcome and the failure, and clicking a message opens its raw text
(issue 13). The page has no script of its own (CSS ``:target``); the check adds one that clicks an
arrow as a user would and reads what the browser then displays.
"""

from __future__ import annotations

import re
import subprocess

from tests.user_project import FAILOVER_TEST, INI

pytest_plugins = ["pytester"]

TESTS = '''
import pytest_twisted

from sipharness.harness.lab import Address, Domain

''' + FAILOVER_TEST + '''

@pytest_twisted.ensureDeferred
async def test_a_finding(sip_lab):
    await sip_lab.up(Address("fallback"))
    await sip_lab.dut.wait_registered(account=2, timeout=30)  # account 2 is not configured
'''

CLICK = '''<script>
window.addEventListener("load", () => {
  const link = document.querySelector('a.msg[href="#%(id)s"]');
  link.dispatchEvent(new MouseEvent("click", {bubbles: true, cancelable: true, view: window}));
  setTimeout(() => {
    const shown = [...document.querySelectorAll("section.raw")].filter(s => getComputedStyle(s).display !== "none");
    document.body.setAttribute("data-hash", location.hash);
    document.body.setAttribute("data-shown", shown.map(s => s.id).join(","));
    document.body.setAttribute("data-shown-text", shown.map(s => s.innerText).join("\\n").slice(0, 2000));
  }, 200);
});
</script>'''


def _dom(chromium: str, url: str, profile) -> str:
    out = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=3000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0 and "<body" in out.stdout, out.stderr[-2000:]
    return out.stdout


def test_index_and_ladders_in_headless_chromium(pytester, peer, tmp_path):
    chromium = peer("chromium")
    pytester.makeini(INI)
    pytester.makepyfile(test_user=TESTS)
    result = pytester.runpytest_subprocess("--ladder-dir", "ladders")
    assert result.parseoutcomes() == {"passed": 1, "finding": 1}
    ladders = pytester.path / "ladders"

    index = _dom(chromium, (ladders / "index.html").as_uri(), tmp_path / "p1")
    links = re.findall(r'<a href="([^"]+\.html)">ladder</a>', index)
    assert links == ["test_user.py_test_failover.html", "test_user.py_test_a_finding.html"]
    assert "1 pass" in index and "1 finding" in index

    page = ladders / "test_user.py_test_failover.html"
    html = page.read_text(encoding="utf-8")
    # the 3rd REGISTER the silent primary dropped: its arrow is a link to its raw text
    targets = re.findall(r'<a href="#(raw-\d+)" class="msg" id="msg-\d+"><title>REGISTER sip:pbx.example.com', html)
    assert len(targets) == 5  # four to the primary, one to the secondary
    clicked = tmp_path / "clicked.html"
    clicked.write_text(html.replace("</body>", CLICK % {"id": targets[2]} + "</body>"), encoding="utf-8")
    dom = _dom(chromium, clicked.as_uri(), tmp_path / "p2")
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert f'data-hash="#{targets[2]}"' in body and f'data-shown="{targets[2]}"' in body  # that one, and only it
    shown = re.search(r'data-shown-text="([^"]*)"', body).group(1)
    assert "1.500 s 127.0.0.1:" in shown and "→ 127.0.0.10:" in shown and "UDP" in shown
    assert "dropped: rule 1 drop" in shown
    assert "REGISTER sip:pbx.example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:" in shown and "\nCSeq: 1 REGISTER\n" in shown

    finding = _dom(chromium, (ladders / "test_user.py_test_a_finding.html").as_uri(), tmp_path / "p3")
    assert "FINDING" in finding and "waited 30 s" in finding  # the banner: the outcome and the failure message
    assert re.search(r'<section class="raw" id="raw-\d+">.*?<pre>SIP/2.0 200 OK', finding, re.S)
