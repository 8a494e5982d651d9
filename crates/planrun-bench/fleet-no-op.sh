#!/bin/sh
# A no-op `apply --fleet` (every target applied) of 40 targets on one `planrun demo`
# cluster: NEW against OLD (another planrun binary), alternating, 3 rounds, at
# max_parallel 1 and 8. Usage: fleet-no-op.sh NEW OLD PLAN (absolute paths). The
# last progress view goes to stderr. Needs psql and bc. docs/performance.md.
set -e
NEW=$1; OLD=$2; PLAN=$3; DIR=$(mktemp -d)
cd "$DIR"
"$NEW" demo --chapters 50 --keep > demo.out 2>&1
U=$(grep -o "postgresql://[^ ]*/memoir_demo" demo.out | head -1 | sed 's|/memoir_demo$||')
DATA=$(grep "^data directory:" demo.out | cut -d' ' -f3)
for i in $(seq 1 40); do psql -q "$U/postgres" -c "CREATE DATABASE t$i TEMPLATE memoir_demo"; done
for p in 1 8; do
  { printf '[fleet]\nmax_parallel = %s\n\n' $p; for i in $(seq 1 40); do printf '[[target]]\nname = "t%s"\nurl = "%s/t%s"\n\n' $i "$U" $i; done; } > fleet$p.toml
done
for round in 1 2 3; do
  for p in 1 8; do
    for bin in "$OLD" "$NEW"; do
      s=$(date +%s.%N); "$bin" apply "$PLAN" --fleet fleet$p.toml --no-backup --format json > out.json 2> progress-$p.txt; e=$(date +%s.%N)
      echo "round $round max_parallel $p $(basename $bin): $(echo "$e - $s" | bc) s"
    done
  done
done
cat progress-8.txt >&2
su -s /bin/sh postgres -c "pg_ctl stop -m fast -D '$DATA'" > /dev/null 2>&1 || true
SCRATCH=$(grep -o "/tmp/planrun-demo-[A-Za-z0-9]*" demo.out | head -1); rm -rf "$(dirname "$DATA")" "$SCRATCH" "$DIR"
