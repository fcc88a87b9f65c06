#!/usr/bin/env bash
# Checks spillway's monitoring files with promtool:
#   1. promtool check rules monitoring/alerts.yml
#   2. promtool test rules  monitoring/alerts_test.yml (alert unit tests)
#   3. monitoring/dashboard.json: valid JSON, the expected datasource and
#      template variables, every PromQL expression valid (each `expr`, and the
#      selector of each label_values() variable, with the template variables
#      replaced by concrete values, checked by promtool as recording rules),
#      and every spillway_* metric it, alerts.yml or alerts_test.yml names is
#      declared in include/spillway/metric_names.h
#   4. for each FILE argument: promtool check metrics < FILE (exposition text)
#
# Usage (from anywhere; paths are relative to the repository):
#   scripts/check_monitoring.sh [EXPOSITION_FILE...]
#   scripts/check_monitoring.sh --print-promtool   # fetch if needed, print path
#
# promtool comes from Debian's `prometheus` package, fetched the light way (no
# install): `apt-get download prometheus` into the cache directory (with
# `apt-get update` first only if the download fails), unpacked there with
# `dpkg-deb -x`. The cache is reused: SPILLWAY_PROMTOOL_CACHE, default
# .cache/promtool (git-ignored). PROMTOOL=/path/to/promtool skips the fetch.
# Needs python3 for the dashboard check (installed from Debian's archive if
# missing, as root or with sudo).
#
# Prints one line per check; exits non-zero if any check fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SPILLWAY_PROMTOOL_CACHE:-$ROOT/.cache/promtool}
MON=$ROOT/monitoring

die() {
  echo "check_monitoring: $*" >&2
  exit 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "needs root (or sudo) to run: $*"
  fi
}

# Prints the path of a working promtool, fetching it into $CACHE if needed.
# Progress goes to stderr, so stdout is only the path.
promtool_path() {
  if [ -n "${PROMTOOL:-}" ]; then
    [ -x "$PROMTOOL" ] || die "PROMTOOL=$PROMTOOL is not executable"
    echo "$PROMTOOL"
    return
  fi
  local bin=$CACHE/unpacked/usr/bin/promtool
  if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
    echo "$bin"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: cannot fetch promtool (set PROMTOOL)"
  command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found: cannot unpack promtool (set PROMTOOL)"
  echo "check_monitoring: fetching promtool (apt-get download prometheus) into $CACHE" >&2
  mkdir -p "$CACHE"
  rm -f "$CACHE"/prometheus_*.deb
  local log=$CACHE/apt.log
  if ! (cd "$CACHE" && apt-get download prometheus) >"$log" 2>&1; then
    echo "check_monitoring: download failed; running apt-get update and retrying" >&2
    as_root apt-get update -qq >>"$log" 2>&1 || true
    if ! (cd "$CACHE" && apt-get download prometheus) >>"$log" 2>&1; then
      cat "$log" >&2
      die "apt-get download prometheus failed (see above)"
    fi
  fi
  local debs=("$CACHE"/prometheus_*.deb)
  [ -f "${debs[0]}" ] || die "apt-get download prometheus produced no .deb in $CACHE"
  # Unpack next to the cache and move into place, so an interrupted run never
  # leaves a half-unpacked tree that a later run would trust.
  local tmp
  tmp=$(mktemp -d "$CACHE/unpacked.XXXXXX")
  dpkg-deb -x "${debs[0]}" "$tmp" || die "dpkg-deb -x ${debs[0]} failed"
  rm -rf "$CACHE/unpacked"
  mv "$tmp" "$CACHE/unpacked"
  rm -f "${debs[@]}" "$log"
  "$bin" --version >/dev/null 2>&1 || die "$bin does not run"
  echo "$bin"
}

if [ "${1:-}" = "--print-promtool" ]; then
  promtool_path
  exit 0
fi
for f in "$@"; do
  case $f in
    -*) die "unknown option $f (usage: $0 [--print-promtool] [EXPOSITION_FILE...])" ;;
  esac
done

PROMTOOL_BIN=$(promtool_path)

if ! command -v python3 >/dev/null 2>&1; then
  echo "check_monitoring: installing python3 (for the dashboard check)" >&2
  as_root apt-get install -y -qq --no-install-recommends python3 >/dev/null 2>&1 ||
    { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends python3 >/dev/null; } ||
    die "python3 is missing and could not be installed"
fi

failures=0
total=0
# run_check NAME COMMAND...: runs the command, prints one line, and the
# command's output only when it fails.
run_check() {
  local name=$1
  shift
  local out
  total=$((total + 1))
  if out=$("$@" 2>&1); then
    # promtool's verdict line (e.g. "SUCCESS: 11 rules found"), or the
    # dashboard check's summary.
    local last
    # shellcheck disable=SC2016  # sed script, not shell
    last=$(printf '%s\n' "$out" | sed -n 's/^ *//; /./h; ${x;p;}')
    echo "ok    $name${last:+: $last}"
  else
    echo "FAIL  $name"
    printf '%s\n' "$out" | sed 's/^/      /'
    failures=$((failures + 1))
  fi
}

check_dashboard() {
  python3 - "$PROMTOOL_BIN" "$MON/dashboard.json" "$ROOT/include/spillway/metric_names.h" \
    "$MON/alerts.yml" "$MON/alerts_test.yml" <<'PY'
import json, os, re, subprocess, sys, tempfile

promtool, dash_path, names_path = sys.argv[1:4]
rule_texts = sys.argv[4:]
problems = []

try:
    with open(dash_path) as f:
        dash = json.load(f)
except (OSError, ValueError) as e:
    sys.exit(f"{dash_path}: not valid JSON: {e}")

# Template variables.
variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    problems.append('templating: needs a variable "datasource" of type datasource, query prometheus')
for name in ("instance", "throttle"):
    v = variables.get(name)
    q = v and v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if not v or v.get("type") != "query" or not str(q).startswith("label_values("):
        problems.append(f'templating: needs a query variable "{name}" from label_values(...)')
if not isinstance(dash.get("schemaVersion"), int):
    problems.append("schemaVersion missing")

# Values standing in for template variables, so the queries parse.
GRAFANA_VARS = {
    "__rate_interval": "1m", "__interval": "1m", "__interval_ms": "60000",
    "__range": "1h", "__range_s": "3600", "__range_ms": "3600000",
    "__dashboard": "spillway", "__org": "1", "__user": "admin",
}
values = dict(GRAFANA_VARS)
for name, v in variables.items():
    if v.get("type") == "interval":
        values[name] = "5m"
    elif v.get("type") == "datasource":
        values[name] = "prometheus"
    else:
        values[name] = "example-" + name
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")

def substitute(expr, where):
    def rep(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            problems.append(f"{where}: unknown template variable ${name}")
            return "unknown"
        return values[name]
    return VAR_RE.sub(rep, expr)

exprs = []  # (where, expr)

def walk(panels):
    ids = []
    for p in panels:
        ids.append(p.get("id"))
        where = f'panel {p.get("id")} "{p.get("title", "")}"'
        if p.get("type") == "row":
            ids += walk(p.get("panels", []))
            continue
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"{where}: datasource uid is not ${{datasource}}")
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{where}: no queries")
        for t in targets:
            if not t.get("expr", "").strip():
                problems.append(f'{where} query {t.get("refId")}: empty expr')
                continue
            if (t.get("datasource") or {}).get("uid", "${datasource}") != "${datasource}":
                problems.append(f'{where} query {t.get("refId")}: datasource uid is not ${{datasource}}')
            exprs.append((f'{where} query {t.get("refId")}', t["expr"]))
    return ids

ids = walk(dash.get("panels", []))
if len(ids) != len(set(ids)):
    problems.append(f"panel ids are not unique: {sorted(i for i in ids if ids.count(i) > 1)}")

for name, v in variables.items():
    if v.get("type") != "query":
        continue
    q = v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q, re.S)
    m2 = re.fullmatch(r"\s*query_result\((.*)\)\s*", q, re.S)
    if m:
        exprs.append((f'variable "{name}"', m.group(1)))
    elif m2:
        exprs.append((f'variable "{name}"', m2.group(1)))
    elif not re.fullmatch(r"\s*(label_names|metrics)\(.*\)\s*", q, re.S):
        problems.append(f'variable "{name}": unrecognised query {q!r}')

# Every expression, with concrete values, as a recording rule for promtool.
rules = []
for i, (where, expr) in enumerate(exprs):
    rules.append({"record": f"dashboard:expr_{i}", "expr": substitute(expr, where)})
with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, indent=2)
    rules_path = f.name
try:
    r = subprocess.run([promtool, "check", "rules", rules_path], capture_output=True, text=True)
finally:
    os.unlink(rules_path)
if r.returncode != 0:
    out = (r.stdout + r.stderr).strip().replace(rules_path, "<dashboard queries>")
    bad = sorted(set(int(i) for i in re.findall(r"dashboard:expr_(\d+)", out)))
    problems.append("promtool rejected dashboard queries:\n" + out + "\n"
                    + "\n".join(f"dashboard:expr_{i} is {exprs[i][0]}:\n{rules[i]['expr']}" for i in bad))

# Metric names against the one table (histograms add _bucket, _sum, _count).
# PENDING: names being added to metric_names.h; noted, not failed, until then.
PENDING = {"spillway_limit_min", "spillway_limit_max", "spillway_overload_cause"}
declared = set(re.findall(r'"(spillway_\w+)"', open(names_path).read()))
def known(n):
    return n in declared or any(n.endswith(s) and n[: -len(s)] in declared
                                for s in ("_bucket", "_sum", "_count"))
used = {}
for where, expr in exprs:
    for n in re.findall(r"\bspillway_\w+", expr):
        used.setdefault(n, where)
for path in rule_texts:
    for n in re.findall(r"\bspillway_[a-z0-9_]*[a-z0-9]", open(path).read()):
        used.setdefault(n, os.path.relpath(path))
pending = []
for n, where in sorted(used.items()):
    if known(n):
        continue
    if n in PENDING:
        pending.append(n)
    else:
        problems.append(f"{where}: {n} is not declared in include/spillway/metric_names.h")

summary = f"{len(exprs)} queries parse, {len(used)} metric names declared"
if pending:
    summary += f" (note: {', '.join(pending)} not yet in metric_names.h)"
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(summary)
PY
}

echo "promtool: $PROMTOOL_BIN ($("$PROMTOOL_BIN" --version 2>&1 | head -n1))"
run_check "promtool check rules monitoring/alerts.yml" \
  "$PROMTOOL_BIN" check rules "$MON/alerts.yml"
run_check "promtool test rules monitoring/alerts_test.yml" \
  "$PROMTOOL_BIN" test rules "$MON/alerts_test.yml"
run_check "dashboard monitoring/dashboard.json (JSON, variables, PromQL, metric names)" \
  check_dashboard
for f in "$@"; do
  if [ ! -f "$f" ]; then
    total=$((total + 1))
    failures=$((failures + 1))
    echo "FAIL  promtool check metrics < $f: no such file"
    continue
  fi
  # shellcheck disable=SC2016  # expanded by the inner sh
  run_check "promtool check metrics < $f" sh -c '"$1" check metrics < "$2"' _ "$PROMTOOL_BIN" "$f"
done

if [ "$failures" -ne 0 ]; then
  echo "check_monitoring: $failures of $total checks FAILED" >&2
  exit 1
fi
echo "check_monitoring: all $total checks passed"
