#!/usr/bin/env bash
# baresip alone (docs/baresip.md): ci/stack_report.sh baresip, kept under its old name.
exec "$(dirname "$0")/stack_report.sh" baresip "$@"
