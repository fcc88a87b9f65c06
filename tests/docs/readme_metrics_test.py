#!/usr/bin/env python3
"""The README's Metrics table equals the one table of metrics.

Parses include/spillway/metric_names.h (every `inline constexpr MetricDef kX{
"name", MetricType::kY, "help" "more help", kLabels, buckets};`, the label
arrays `inline constexpr absl::string_view kXLabels[] = {"a", "b"};` and the
order of `kAll`) and the first table under "## Metrics" in README.md (columns
name, type, labels, help), and fails unless the table lists exactly the
metrics of `kAll`, in that order, with the same type, labels and help text.

Usage: python3 tests/docs/readme_metrics_test.py REPO_ROOT
Exit status: 0 when they agree; 1 with the first difference on stderr; 2 for
a usage error. Python 3 standard library only.
"""

import os
import re
import sys

HEADER = os.path.join("include", "spillway", "metric_names.h")
README = "README.md"
SECTION = "## Metrics"
TYPES = {"kCounter": "counter", "kGauge": "gauge", "kHistogram": "histogram"}


class Mismatch(Exception):
    pass


# --- metric_names.h ----------------------------------------------------------

_TOKEN = re.compile(
    r"""
      (?P<comment>//[^\n]*|/\*.*?\*/)
    | (?P<string>"(?:\\.|[^"\\\n])*")
    | (?P<ident>[A-Za-z_]\w*(?:::[A-Za-z_]\w*)*)
    | (?P<number>\d[\w.+-]*)
    | (?P<space>\s+)
    | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "'": "'"}


def _unquote(literal):
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)),
                  body)


def tokenize(text):
    """(kind, value) pairs; comments and whitespace dropped, strings
    unquoted."""
    tokens = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in ("comment", "space"):
            continue
        if kind == "string":
            tokens.append(("string", _unquote(m.group())))
        else:
            tokens.append((kind, m.group()))
    return tokens


def _braced(tokens, i, where):
    """tokens[i] is '{'; returns (top-level comma-separated fields, index
    after the matching '}')."""
    if tokens[i] != ("punct", "{"):
        raise Mismatch("%s: expected '{' in %s" % (HEADER, where))
    depth, fields, field = 0, [], []
    for j in range(i, len(tokens)):
        tok = tokens[j]
        if tok == ("punct", "{"):
            depth += 1
            if depth == 1:
                continue
        elif tok == ("punct", "}"):
            depth -= 1
            if depth == 0:
                if field:
                    fields.append(field)
                return fields, j + 1
        elif tok == ("punct", ",") and depth == 1:
            fields.append(field)
            field = []
            continue
        field.append(tok)
    raise Mismatch("%s: unbalanced braces in %s" % (HEADER, where))


def _strings(field, what, where):
    if not field or any(kind != "string" for kind, _ in field):
        raise Mismatch("%s: %s of %s is not a string literal: %s" %
                       (HEADER, what, where, " ".join(v for _, v in field)))
    return "".join(v for _, v in field)


def _seq(tokens, i, words):
    """True if tokens[i:] starts with `words` (values, any kind)."""
    return [v for _, v in tokens[i:i + len(words)]] == words


def parse_header(text):
    """The metrics of kAll, in order: dicts name, type, labels, help."""
    tokens = tokenize(text)
    label_arrays, defs, order = {}, {}, None
    i = 0
    while i < len(tokens):
        if not _seq(tokens, i, ["inline", "constexpr"]):
            i += 1
            continue
        j = i + 2
        if _seq(tokens, j, ["absl::string_view"]) and \
                _seq(tokens, j + 2, ["[", "]", "="]):
            ident = tokens[j + 1][1]
            fields, i = _braced(tokens, j + 5, ident)
            label_arrays[ident] = [_strings(f, "a label", ident)
                                   for f in fields]
        elif _seq(tokens, j, ["MetricDef"]) and tokens[j + 1][0] == "ident":
            ident = tokens[j + 1][1]
            fields, i = _braced(tokens, j + 2, ident)
            if len(fields) < 4:
                raise Mismatch("%s: %s has %d fields, expected name, type, "
                               "help, labels" % (HEADER, ident, len(fields)))
            type_field = [v for _, v in fields[1]]
            type_name = type_field[0].split("::")[-1] if type_field else ""
            if len(type_field) != 1 or type_name not in TYPES:
                raise Mismatch("%s: %s: unknown type %s" %
                               (HEADER, ident, " ".join(type_field)))
            labels = fields[3]
            if len(labels) == 1 and labels[0][0] == "ident":
                labels = labels[0][1]  # resolved once all arrays are read
            else:
                raise Mismatch("%s: %s: labels must name a k...Labels array" %
                               (HEADER, ident))
            defs[ident] = {
                "ident": ident,
                "name": _strings(fields[0], "the name", ident),
                "type": TYPES[type_name],
                "help": _strings(fields[2], "the help", ident),
                "labels": labels,
            }
        elif _seq(tokens, j, ["const", "MetricDef", "*", "kAll", "[", "]",
                              "="]):
            fields, i = _braced(tokens, j + 7, "kAll")
            order = []
            for f in fields:
                if len(f) != 2 or f[0] != ("punct", "&"):
                    raise Mismatch("%s: kAll entry is not &kName: %s" %
                                   (HEADER, " ".join(v for _, v in f)))
                order.append(f[1][1])
        else:
            i = j
    if order is None:
        raise Mismatch("%s: no kAll table found" % HEADER)
    metrics = []
    for ident in order:
        if ident not in defs:
            raise Mismatch("%s: kAll names %s, which is not a MetricDef "
                           "defined there" % (HEADER, ident))
        d = dict(defs[ident])
        if d["labels"] not in label_arrays:
            raise Mismatch("%s: %s uses labels %s, not defined there" %
                           (HEADER, ident, d["labels"]))
        d["labels"] = label_arrays[d["labels"]]
        metrics.append(d)
    if not metrics:
        raise Mismatch("%s: kAll is empty" % HEADER)
    return metrics


# --- README.md ---------------------------------------------------------------


def _cells(line):
    """Cells of a Markdown table row; `\\|` is a literal pipe."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.replace("\\|", "|").strip()
            for c in re.split(r"(?<!\\)\|", line)]


def _code(cell):
    cell = cell.strip()
    if len(cell) >= 2 and cell.startswith("`") and cell.endswith("`"):
        return cell[1:-1].strip()
    return cell


def parse_readme(text):
    """Rows of the first table under SECTION: (line number, dict)."""
    lines = text.split("\n")
    try:
        start = next(n for n, l in enumerate(lines) if l.strip() == SECTION)
    except StopIteration:
        raise Mismatch("%s: no %r section" % (README, SECTION))
    n = start + 1
    while n < len(lines) and not lines[n].lstrip().startswith("|"):
        if lines[n].startswith("## "):
            raise Mismatch("%s: no table in the %r section" %
                           (README, SECTION))
        n += 1
    if n >= len(lines):
        raise Mismatch("%s: no table in the %r section" % (README, SECTION))
    header = [c.lower() for c in _cells(lines[n])]
    columns = {}
    for want in ("name", "type", "labels", "help"):
        if want not in header:
            raise Mismatch("%s line %d: the Metrics table has no %r column "
                           "(columns: %s)" %
                           (README, n + 1, want, ", ".join(header)))
        columns[want] = header.index(want)
    if n + 1 >= len(lines) or \
            not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)*\s*:?-+:?\s*\|?",
                             lines[n + 1].strip()):
        raise Mismatch("%s line %d: the Metrics table has no separator row" %
                       (README, n + 2))
    rows = []
    n += 2
    while n < len(lines) and lines[n].lstrip().startswith("|"):
        cells = _cells(lines[n])
        if len(cells) != len(header):
            raise Mismatch("%s line %d: %d cells, the header has %d: %s" %
                           (README, n + 1, len(cells), len(header),
                            lines[n].strip()))
        labels = _code(cells[columns["labels"]])
        rows.append((n + 1, {
            "name": _code(cells[columns["name"]]),
            "type": _code(cells[columns["type"]]),
            "labels": [_code(l) for l in labels.split(",") if l.strip()],
            "help": cells[columns["help"]],
        }))
        n += 1
    return rows


# --- comparison --------------------------------------------------------------


def compare(metrics, rows):
    for k, metric in enumerate(metrics):
        where = "%s, metric %d of kAll (%s, %s)" % (HEADER, k + 1,
                                                     metric["ident"],
                                                     metric["name"])
        if k >= len(rows):
            raise Mismatch("%s: missing from the README's Metrics table, "
                           "which ends after %d rows" % (where, len(rows)))
        line, row = rows[k]
        if row["name"] != metric["name"]:
            listed = [r["name"] for _, r in rows]
            hint = ("it is listed at row %d" %
                    (listed.index(metric["name"]) + 1)
                    if metric["name"] in listed else "it is not listed")
            raise Mismatch("%s line %d: row %d is %s, expected %s (%s; %s)" %
                           (README, line, k + 1, row["name"], metric["name"],
                            where, hint))
        for field in ("type", "labels", "help"):
            if row[field] != metric[field]:
                raise Mismatch(
                    "%s line %d: %s: the %s %s\n  README:          %r\n"
                    "  metric_names.h:  %r" %
                    (README, line, metric["name"], field,
                     "differ" if field == "labels" else "differs",
                     row[field], metric[field]))
    if len(rows) > len(metrics):
        line, row = rows[len(metrics)]
        raise Mismatch("%s line %d: %s is not in kAll of %s (the table has "
                       "%d rows, kAll %d)" %
                       (README, line, row["name"], HEADER, len(rows),
                        len(metrics)))


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s REPO_ROOT\n" % argv[0])
        return 2
    root = argv[1]
    try:
        with open(os.path.join(root, HEADER), encoding="utf-8") as f:
            metrics = parse_header(f.read())
        with open(os.path.join(root, README), encoding="utf-8") as f:
            rows = parse_readme(f.read())
        compare(metrics, rows)
    except (Mismatch, OSError) as e:
        sys.stderr.write("readme_metrics_test: FAIL: %s\n" % e)
        return 1
    print("readme_metrics_test: OK: the README's Metrics table lists the %d "
          "metrics of kAll in order, with type, labels and help" %
          len(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
