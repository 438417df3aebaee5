#!/usr/bin/env bash
# docs/integration.md quotes tests/capi/consumer/example.{c,cc}, which the install test
# builds and runs. Each quote sits between `<!-- example: PATH -->` and `<!-- end -->`,
# inside a fenced code block; this checks it equals PATH byte for byte.
# Usage: check_docs_examples.sh SOURCE_DIR
set -euo pipefail
root=${1:?usage: check_docs_examples.sh SOURCE_DIR}
doc=$root/docs/integration.md
[[ -f "$doc" ]] || { echo "check_docs_examples: $doc is missing" >&2; exit 1; }
status=0
for path in tests/capi/consumer/example.cc tests/capi/consumer/example.c; do
  quoted=$(awk -v marker="<!-- example: $path -->" '
    $0 == marker { on = 1; next }
    on && $0 == "<!-- end -->" { exit }
    on && /^```/ { next }
    on { print }' "$doc")
  if [[ -z "$quoted" ]]; then
    echo "check_docs_examples: $doc does not quote $path" >&2
    status=1
  elif ! diff -u --label "$path" --label "$doc" "$root/$path" <(printf '%s\n' "$quoted") >&2; then
    echo "check_docs_examples: the quote of $path in $doc differs from the file (above)" >&2
    status=1
  fi
done
((status == 0)) && echo "check_docs_examples: the examples in docs/integration.md match"
exit $status
