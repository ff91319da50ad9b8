"""The conformance matrix generator (harness/matrix.py): cells from a small JUnit fixture, evidence links,
trimming, and the committed docs are exactly what it makes of the committed runs."""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET

from sipharness.harness import matrix

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "data", "matrix", "pjsua.xml")
FO = "suites/test_register_failover.py::test_register_fails_over_to_secondary_then_next_register_to_primary"
NE = "suites/test_failback.py::test_dnsttl_stays_until_a_record_ttl_runs_out"


def _docs(tmp_path, evidence: str | None = None):
    docs = tmp_path / "docs"
    (docs / "evidence" / "runs").mkdir(parents=True)
    (docs / "templates").mkdir()
    shutil.copy(FIXTURE, docs / "evidence" / "runs" / "pjsua.xml")
    (docs / "templates" / "pjsua.md").write_text("# PJSIP as a device under test\n\nHand-written part.\n")
    if evidence:
        (docs / "evidence" / "pjsua").mkdir()
        (docs / "evidence" / "pjsua" / "no-failover.md").write_text(evidence)
    return docs


def test_cells_say_met_finding_and_not_expressible(tmp_path):
    run = matrix.read_run(FIXTURE, "pjsua")
    assert run.cell(FO).startswith("**finding**: waited 60 s for secondary")
    assert run.cell(NE) == ("not expressible: `account.1.sip_server.1.failback_mode = 1`, "
                            "`account.1.sip_server.1.failback_timeout = 60`")
    assert run.cell("suites/test_triggers.py::test_register_trigger_moves_to_secondary[503-udp]") == "met"
    assert run.cell("suites/test_configuration.py::test_defaults_of_every_parameter").startswith("skipped: the pjsua")
    assert run.cell("suites/test_x.py::test_never_ran") == "not run"
    assert run.counts() == {"met": 1, "finding": 1, "not expressible": 1, "skipped": 1, "lab": 0, "error": 0}


def test_matrix_and_stack_page_with_evidence_links(tmp_path):
    docs = _docs(tmp_path, "# PJSIP gives a silent target up at 32 s\n<!-- tests: suites/test_register_failover.py::* -->\n")
    out = matrix.generate(str(docs))
    page, table = out[str(docs / "pjsua.md")], out[str(docs / "conformance-matrix.md")]
    assert "| PJSIP 2.15.1 | 2026-12-01 16:18 | 1 | 1 | 1 | 1 | 0 | 0 |" in table
    assert "| baresip 1.0.0 | not run |" in table
    assert "| REG-FO | REGISTER failover, newRequests, register_on_enable 0 | 0 / 1 / 0 |" in table
    assert "| FBK-1 | failback DNSTTL | 0 / 0 / 1 |" in table
    assert "(evidence: [PJSIP gives a silent target up at 32 s](evidence/pjsua/no-failover.md))" in table
    assert "| `sip_server.1.retry_counts` |" in table, "the translation table is part of the matrix"
    assert page.startswith("# PJSIP as a device under test\n\nHand-written part.\n")
    assert "1 met, 1 findings, 1 not expressible, 1 skipped, 0 lab problems, 0 harness errors" in page
    assert "- REG-FO: `test_register_failover.py::test_register_fails_over_to_secondary_then_next_register_to_primary`" \
           ": waited 60 s" in page
    assert f"- `{NE.split('/', 1)[1]}`: `account.1.sip_server.1.failback_mode = 1`" in page


def test_write_then_check(tmp_path, capsys):
    docs = _docs(tmp_path)
    assert matrix.main(["--docs", str(docs), "--check"]) == 1
    assert "not what the runs make" in capsys.readouterr().err
    assert matrix.main(["--docs", str(docs)]) == 0
    assert matrix.main(["--docs", str(docs), "--check"]) == 0


def test_trim_keeps_properties_and_messages(tmp_path):
    path = tmp_path / "run.xml"
    shutil.copy(FIXTURE, path)
    matrix.main(["trim", str(path)])
    case = ET.parse(path).getroot().find(".//testcase")
    assert case.find("failure").text is None and case.find("failure").get("message") == "WaitTimeout"
    assert matrix.read_run(str(path), "pjsua").cell(FO) == matrix.read_run(FIXTURE, "pjsua").cell(FO)


def test_committed_docs_are_what_the_committed_runs_make():
    docs = os.path.join(ROOT, "docs")
    stale = [p for p, text in matrix.generate(docs).items()
             if not os.path.isfile(p) or open(p, encoding="utf-8").read() != text]
    assert not stale, f"run python -m sipharness.harness.matrix: {stale} differ from what the runs make"
    assert os.path.isfile(os.path.join(docs, "evidence", "runs", "baresip.xml")), "the runs the docs come from"
