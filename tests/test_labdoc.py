"""docs/lab.md is generated from the driver's own template (harness/labdoc.py): the committed file must be what
the generator makes, so the lab's checklist and the code never disagree."""

from sipharness.harness import labdoc
from sipharness.harness.vendor_cfg import Template, driver_rows


def test_the_committed_checklist_is_what_the_driver_makes():
    assert labdoc.DOC.read_text(encoding="utf-8") == labdoc.render(), \
        "docs/lab.md is stale: run python -m sipharness.harness.labdoc"


def test_the_checklist_names_every_key_the_driver_writes():
    text = labdoc.render()
    for row in driver_rows(Template(), (1,)):
        if not row.key.startswith("sipharness."):
            assert f"`{row.key}`" in text, row.key
    assert "port 53" in text and "minutes per phone" in text and "Set on the phone by hand" in text
