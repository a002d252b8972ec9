#!/bin/sh
# make sim-selftest: the checkers must be able to fail.  Each planted bug
# (build/simbug-N/stallmesh-sim, the library compiled with SM_SIM_BUG=N) is
# run on a few seeds until the simulator fails one; the clean simulator must
# pass that same seed.  One line per bug, containing "caught" when it was.
set -u
build=${1:-build}
clean=$build/stallmesh-sim
status=0
try() {
    n=$1 name=$2 opts=$3
    sim=$build/simbug-$n/stallmesh-sim
    # A missing binary also exits non-zero: that is no catch.
    if [ ! -x "$sim" ] || [ ! -x "$clean" ]; then
        echo "sim-selftest: bug $n ($name): $sim or $clean missing (make sim-selftest builds them)"
        status=1
        return
    fi
    seed=1
    while [ "$seed" -le 8 ]; do
        out=$("$sim" --seed "$seed" $opts 2>/dev/null)
        if [ $? -ne 0 ]; then
            why=$(printf '%s\n' "$out" | sed -n 's/^seed [0-9]* FAILED: //p' | head -1)
            [ -n "$why" ] || why=$(printf '%s\n' "$out" | head -1)
            if "$clean" --seed "$seed" $opts >/dev/null 2>&1; then
                echo "sim-selftest: bug $n ($name): caught by seed $seed ($opts): $why"
            else
                echo "sim-selftest: bug $n ($name): seed $seed fails without the bug too: not a catch"
                status=1
            fi
            return
        fi
        seed=$((seed + 1))
    done
    echo "sim-selftest: bug $n ($name): NOT CAUGHT in seeds 1..8 ($opts)"
    status=1
}
try 1 "skip the units check" "--faults none --ticks 60"
try 2 "apply a duplicate twice" "--faults loss,dup --ticks 60"
try 3 "ignore a signature" "--faults hostile --ticks 90"
try 4 "drop a relay" "--faults none --ticks 30"
try 5 "count a return twice" "--faults none --ticks 60"
try 6 "serve a damaged entry" "--faults damage --ticks 120"
try 7 "forward a hold twice" "--faults none --ticks 90"
try 9 "a sold hold stays open" "--faults none --ticks 120"
try 10 "sell before a drop starts" "--faults none --ticks 90"
try 11 "skip a first-come drop's caps" "--faults none --ticks 90"
try 12 "a forwarded raffle entry asked of every peer" "--faults none --ticks 90"
try 13 "skip a shopper's hold limits" "--faults none --ticks 90"
try 14 "a lost own-log WANT not hedged" "--faults loss,restore --ticks 120"
try 15 "a deleted record stays in the digest's sum" "--faults none --ticks 60"
try 16 "a stock change left out of the change log" "--faults none --ticks 60"
try 17 "a kept drop walk skips an entry" "--faults none --ticks 120"
exit $status
