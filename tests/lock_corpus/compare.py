#!/usr/bin/env python3
"""Runs squawk over the lock corpus and prints the comparison table of
docs/lock-analysis.md, beside planrun's findings.

    PLANRUN_LOCK_CORPUS_OUT=/tmp/planrun.tsv cargo test -p planrun-tests --test lock_corpus
    python3 tests/lock_corpus/compare.py /tmp/planrun.tsv > /tmp/table.md

Each line is given to squawk as its own file after the session settings planrun's
plan-level keys stand for (`lock_timeout`, `statement_timeout`), so that neither tool
reports their absence.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# squawk rules about re-running a failed file and naming style, not about locks.
STYLE = ["prefer-robust-stmts"]
SETTINGS = "SET lock_timeout = '1s';\nSET statement_timeout = '30min';\n"


def corpus(name):
    with open(os.path.join(HERE, name)) as f:
        for number, line in enumerate(f, 1):
            if line.strip() and not line.startswith("--"):
                yield number, line.strip()


def squawk(script):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(SETTINGS + script + "\n")
    out = subprocess.run(
        ["squawk", "--reporter", "json", "--pg-version", "15", f.name],
        capture_output=True, text=True,
    ).stdout
    os.unlink(f.name)
    rules = []
    for violation in json.loads(out or "[]"):
        if violation["rule_name"] not in rules:
            rules.append(violation["rule_name"])
    return rules


def main():
    planrun = {}
    with open(sys.argv[1]) as f:
        for row in f:
            file, line, rules = row.rstrip("\n").split("\t")
            planrun[(file, int(line))] = [r for r in rules.split(",") if r]
    counts = {}
    for file in ["dangerous.sql", "safe.sql"]:
        print(f"\n#### `{file}`\n")
        print("| line | statement | planrun | squawk 2.70 |")
        print("|---|---|---|---|")
        flagged = {"planrun": 0, "squawk": 0, "squawk_lock": 0}
        for number, script in corpus(file):
            ours, theirs = planrun[(file, number)], squawk(script)
            flagged["planrun"] += bool(ours)
            flagged["squawk"] += bool(theirs)
            flagged["squawk_lock"] += bool([r for r in theirs if r not in STYLE])
            cell = lambda rules: ", ".join(f"`{r}`" for r in rules) or "-"
            shown = script.replace("|", "\\|")
            print(f"| {number} | `{shown}` | {cell(ours)} | {cell(theirs)} |")
        counts[file] = (len(list(corpus(file))), flagged)
    print()
    for file, (total, flagged) in counts.items():
        print(
            f"- `{file}`: {total} scripts; planrun flags {flagged['planrun']}; squawk flags "
            f"{flagged['squawk']}, {flagged['squawk_lock']} with a rule other than {', '.join(STYLE)}"
        )


if __name__ == "__main__":
    main()
