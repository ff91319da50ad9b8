#!/usr/bin/env bash
# Qualify baresip (Debian 1.0.0) against the conformance suites in report mode (docs/baresip.md).
#
# Prints each finding (the "sipharness findings" lines: "RULE: test: what the phone did") and the
# per-scenario rule table. Exit 0 when the run completes: a rule baresip breaks is a finding, not a
# failure. Non-zero only for a lab problem (78: the lab preflight failed), a harness error (70: a
# crash, a fake's error, a failed start; 124/137: a hang past the run's deadline; 3: a baresip
# process left behind) or when baresip is not installed.
#
# -n 4 on a 2-core box on purpose: the tests spend their time waiting for real-clock timers
# (SPEC §9 real clock), each worker uses ~1 % CPU, and four workers bring the run from ~21 to
# ~11 minutes. The CFG suite runs too: it skips at once (baresip neither validates a .cfg nor
# reports its effective configuration) and shows as "skipped" in the table.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v baresip >/dev/null 2>&1; then
    echo "ci/baresip_report.sh: baresip is not installed (apt-get install baresip)" >&2
    exit 2
fi
start=$(date +%s)
status=0
# A whole-run deadline as well: pytest-timeout's --timeout did not interrupt a test waiting inside
# the Twisted reactor (a 212 s test ran to its end under --timeout 120), so a hang is caught here.
timeout --kill-after=30 "${BARESIP_RUN_TIMEOUT:-1800}" python3 -m pytest suites --dut baresip --report-mode -p no:randomly -p no:cacheprovider \
    --timeout "${BARESIP_TEST_TIMEOUT:-120}" -n "${BARESIP_WORKERS:-4}" -q -rsx \
    -W ignore::DeprecationWarning "$@" || status=$?
echo "ci/baresip_report.sh: report run took $(( $(date +%s) - start )) s, pytest exit status ${status}"
# every baresip the DUT starts runs as "baresip -f <tmp>/sipharness-baresip-XXXX" (harness/baresip.py)
leftover=$(pgrep -f -- "-f .*sipharness-baresip-" || true)
if [ -n "$leftover" ]; then
    echo "ci/baresip_report.sh: baresip processes left behind (a harness error): $leftover" >&2
    for pid in $leftover; do kill -KILL "$pid" 2>/dev/null || true; done
    status=3
fi
exit "$status"
