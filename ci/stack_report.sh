#!/usr/bin/env bash
# Qualify one third-party SIP stack against the conformance suites in report mode, in the lab-in-a-box:
#     ci/stack_report.sh baresip|pjsua|linphone [pytest options...]
# (docs/conformance-matrix.md: baresip 1.0.0, PJSIP 2.15.1 through pjsua2, liblinphone 5.1.65 through
# linphone-daemon; each xdist worker runs its stack in a private network namespace, so this needs root.)
#
# Prints each finding ("RULE: test: what the phone did") and the per-scenario rule table, and writes the
# run's JUnit XML to ${SIPHARNESS_RUNS_DIR:-build/runs}/STACK.xml (what python -m sipharness.harness.matrix
# reads). Exit 0 when the run completes: a rule the stack breaks is a finding, and a key it cannot express is
# a skip, neither fails. Non-zero for a lab problem (78: the lab preflight failed), a harness error (70: a
# crash of the stack or of the harness, a fake's error, a failed start; 124/137: a hang past the run's
# deadline; 3: a process of the stack left behind), or when the stack is not installed (2).
#
# -n 4 on a 2-core box on purpose: the tests spend their time waiting for real-clock timers (SPEC §9 real
# clock), each worker and its stack use ~1 % CPU, and four workers bring a run from ~21 to ~11 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
stack="${1:?usage: ci/stack_report.sh baresip|pjsua|linphone [pytest options]}"
shift
case "$stack" in
    baresip)  need="baresip";         leftover_pattern="-f .*sipharness-baresip-" ;;
    pjsua)    need="";                leftover_pattern="sipharness\.harness\.pjsua_driver" ;;
    linphone) need="linphone-daemon"; leftover_pattern="sipharness-linphone-" ;;
    *) echo "ci/stack_report.sh: unknown stack '$stack' (baresip, pjsua, linphone)" >&2; exit 2 ;;
esac
if [ -n "$need" ] && ! command -v "$need" >/dev/null 2>&1; then
    echo "ci/stack_report.sh: $need is not installed (.ci/run's apt-get line)" >&2
    exit 2
fi
if [ "$stack" = pjsua ] && ! python3 -c "import pjsua2" >/dev/null 2>&1; then
    echo "ci/stack_report.sh: the pjsua2 module is not installed (pip install -e '.[pjsua]')" >&2
    exit 2
fi
runs="${SIPHARNESS_RUNS_DIR:-build/runs}"
mkdir -p "$runs"
start=$(date +%s)
status=0
# A whole-run deadline as well: pytest-timeout's --timeout did not interrupt a test waiting inside the
# Twisted reactor (a 212 s test ran to its end under --timeout 120), so a hang is caught here.
timeout --kill-after=30 "${SIPHARNESS_RUN_TIMEOUT:-1800}" python3 -m pytest suites --dut "$stack" --report-mode \
    -p no:randomly -p no:cacheprovider --timeout "${SIPHARNESS_TEST_TIMEOUT:-150}" -n "${SIPHARNESS_WORKERS:-4}" \
    -q -rs -W ignore::DeprecationWarning --junitxml="$runs/$stack.xml" "$@" || status=$?
echo "ci/stack_report.sh $stack: report run took $(( $(date +%s) - start )) s, pytest exit status ${status}"
# every process the DUT starts carries a name of its own (harness/baresip.py, pjsua.py, linphone.py)
leftover=$(pgrep -f -- "$leftover_pattern" || true)
if [ -n "$leftover" ]; then
    echo "ci/stack_report.sh $stack: processes left behind (a harness error): $leftover" >&2
    for pid in $leftover; do kill -KILL "$pid" 2>/dev/null || true; done
    status=3
fi
exit "$status"
