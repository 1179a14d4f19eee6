# Readers of train's --json output for the CLI tests (sourced after harness.sh: files are
# $tmp/NAME.out).
losses() {  # NAME: "step loss" per line
  python3 -c 'import json,sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    if "step" in o: print(o["step"], repr(o["loss"]))' "$tmp/$1.out"
}
summary() {  # NAME EXPRESSION over the summary object s
  python3 -c 'import json,sys
s = [json.loads(l) for l in open(sys.argv[1]) if "summary" in l][-1]["summary"]
print(eval(sys.argv[2]))' "$tmp/$1.out" "$2"
}
