# Shared by the CLI tests (sourced; not itself a test): a temporary directory removed at exit,
# a failure count, and check DESCRIPTION COMMAND... which runs the command and records it.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
check() {  # DESCRIPTION COMMAND...: the command must succeed
  local what="$1"; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
# The tool under test is $tool (set it before calling these; a script with other needs
# defines its own run).
run() {  # NAME ARGS...: exit code in $rc, output in $tmp/NAME.{out,err}
  local name="$1"; shift
  "$tool" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
}
one_error_line() {  # NAME PATTERN: exactly one line, "<tool>: error: ...PATTERN"
  [ "$(wc -l <"$tmp/$1.err")" -eq 1 ] && grep -q "^$(basename "$tool"): error: .*$2" "$tmp/$1.err"
}
