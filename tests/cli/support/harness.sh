# Shared by the CLI tests (sourced; not itself a test): a temporary directory removed at exit,
# a failure count, and check DESCRIPTION COMMAND... which runs the command and records it.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
check() {  # DESCRIPTION COMMAND...: the command must succeed
  local what="$1"; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
