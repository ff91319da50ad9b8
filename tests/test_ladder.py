"""fakes/ladder.py on hand-made records: columns, arrows, drops, retransmissions, HTML."""

from sipharness.fakes.ladder import render_ladder, render_ladder_html
from sipharness.fakes.record import Record

P, A, B, D = ("127.0.0.1", 40000), ("127.0.0.10", 5060), ("127.0.0.20", 5060), ("127.0.0.53", 53)


def _records():
    recs = [Record(0.0, "dns", "in", "dns", "udp", D, P, "Q SRV _sip._udp.example.com", method="SRV")]
    for i, t in enumerate((0.0, 0.5, 1.5, 3.5)):
        recs.append(Record(t, "sip", "in", "primary", "udp", A, P, "REGISTER sip:example.com", method="REGISTER",
                           retransmission=i > 0, note="dropped: rule 1 drop REGISTER first=4"))
    recs.append(Record(7.5, "sip", "in", "secondary", "udp", B, P, "REGISTER sip:example.com", method="REGISTER"))
    recs.append(Record(7.5, "sip", "out", "secondary", "udp", B, P, "200 OK", method="REGISTER", status=200))
    return recs


def test_text_ladder_columns_and_marks():
    lines = render_ladder(_records(), title="REG-FO").splitlines()
    head = lines[1]
    assert head.index("phone") < head.index("dns") < head.index("primary") < head.index("secondary")
    body = lines[3:]
    assert len(body) == 7 and body[0].startswith("   0.000 |")
    assert all("✗" in ln and ln.endswith("dropped: rule 1 drop REGISTER first=4") for ln in body[1:5])
    assert [("(retx)" in ln) for ln in body[1:5]] == [False, True, True, True]
    assert "►" in body[5] and "◄" in body[6] and "200 OK" in body[6]
    assert render_ladder(_records(), columns=["secondary", "primary"]).splitlines()[0].index("secondary") < \
        render_ladder(_records(), columns=["secondary", "primary"]).splitlines()[0].index("primary")


def test_html_ladder_is_self_contained():
    page = render_ladder_html(_records(), title="REG-FO <x>")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "REG-FO &lt;x&gt;" in page
    assert page.count("✗") == 4 and "http" not in page.replace("http://www.w3.org/2000/svg", "")
