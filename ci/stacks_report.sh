#!/usr/bin/env bash
# The three third-party stacks in report mode at once (docs/conformance-matrix.md), as CI runs them:
#     ci/stacks_report.sh            # baresip, PJSIP and liblinphone in parallel; each its own deadline
#     ci/stacks_report.sh --update   # then trim the runs into docs/evidence/runs/ and regenerate the docs
#
# In parallel because each run spends its time waiting on real-clock timers (the three together take about
# as long as the slowest). Each stack's output goes to build/runs/STACK.log and is printed when it ends.
# Exit non-zero when any run is (a lab problem, a harness error, a hang, a leftover process: see
# ci/stack_report.sh); findings never fail it. The time of each run is printed.
set -uo pipefail
cd "$(dirname "$0")/.."
update=0
[ "${1:-}" = "--update" ] && update=1
runs="${SIPHARNESS_RUNS_DIR:-build/runs}"
mkdir -p "$runs"
export SIPHARNESS_RUNS_DIR="$runs"
start=$(date +%s)
declare -A pids
for stack in baresip pjsua linphone; do
    bash ci/stack_report.sh "$stack" >"$runs/$stack.log" 2>&1 &
    pids[$stack]=$!
done
worst=0
for stack in baresip pjsua linphone; do
    wait "${pids[$stack]}"
    status=$?
    echo "================ $stack (exit status $status) ================"
    cat "$runs/$stack.log"
    [ "$status" -ne 0 ] && worst=$status
done
echo "ci/stacks_report.sh: the three report runs took $(( $(date +%s) - start )) s together"
if [ "$worst" -eq 0 ] && [ "$update" -eq 1 ]; then
    # the reference column: the bundled phone on the virtual clock (seconds)
    python3 -m pytest suites --report-mode -p no:randomly -p no:cacheprovider -q -n 2 \
        --junitxml="$runs/bundled.xml" >"$runs/bundled.log" 2>&1 || { tail -5 "$runs/bundled.log"; exit 1; }
    mkdir -p docs/evidence/runs
    for stack in bundled baresip pjsua linphone; do cp "$runs/$stack.xml" "docs/evidence/runs/$stack.xml"; done
    python3 -m sipharness.harness.matrix trim docs/evidence/runs/*.xml
    python3 -m sipharness.harness.matrix
fi
exit "$worst"
