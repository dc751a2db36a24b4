#!/usr/bin/env bash
# Leak check of the native addon: runs a native-heavy JS workload under valgrind's memcheck and
# reports leaks ("definitely lost" and "indirectly lost") whose allocation stack passes through
# torch_lora.node. Node/V8 noise is suppressed by scripts/leak-check/node.supp; other leak
# records are counted but not blamed on us. Exit status: 0 when no leak comes from our code.
#
# Usage: scripts/leak-check.sh [cycles]      (default 40; valgrind makes each cycle ~100x slower)
# Needs: valgrind (apt-get install valgrind) and a built addon + dist/ (node scripts/setup.js).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CYCLES="${1:-40}"
LOG="${LEAK_CHECK_LOG:-$(mktemp -t tl-valgrind-XXXXXX.log)}"
command -v valgrind >/dev/null || { echo "leak-check: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
[ -f "$ROOT/dist/lib/index.js" ] || { echo "leak-check: build first: node scripts/setup.js" >&2; exit 2; }

# --expose-gc lets the workload collect garbage so that finalizers free every tensor before exit;
# V8's JIT writes code at run time, which valgrind must be told about (--smc-check).
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
  --suppressions="$ROOT/scripts/leak-check/node.supp" --smc-check=all-non-file --num-callers=40 --log-file="$LOG" \
  node --expose-gc --jitless "$ROOT/test/reliability/support/leak-workload.js" "$ROOT/dist/lib/index.js" "$CYCLES" >/dev/null

# Split the log into leak records and count those with a torch_lora.node frame.
ours=$(awk '/are (definitely|indirectly) lost in loss record/ {rec=1; buf=$0; next}
            rec && /^==[0-9]+== *$/ {if (buf ~ /torch_lora\.node/) {n++; print buf > "/dev/stderr"}; rec=0; next}
            rec {buf = buf "\n" $0}
            END {print n+0}' "$LOG")
total=$(grep -cE "are (definitely|indirectly) lost in loss record" "$LOG" || true)
summary=$(grep -E "definitely lost:|indirectly lost:|possibly lost:" "$LOG" | sed 's/^==[0-9]*== *//' | tr '\n' ';')
echo "leak-check: $CYCLES cycles; leak records from torch_lora.node: $ours; other unsuppressed records: $((total - ours)); $summary log: $LOG"
[ "$ours" -eq 0 ]
