#!/bin/sh
# make fuzz: run each libFuzzer target for FUZZ_SECONDS from its checked-in
# seed corpus (tests/fuzz/corpus/<name>/), FUZZ_JOBS targets at a time.
# New interesting inputs collect in $FUZZ_BUILD/corpus/<name>/ (kept between
# runs, never committed); a crash leaves its input in $FUZZ_BUILD/crashes/
# and fails the run.  Prints one line per target: runs, seconds, CPU
# seconds, result.
set -u
cd "$(dirname "$0")/../.."
B=${FUZZ_BUILD:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-20}
JOBS=${FUZZ_JOBS:-2}
mkdir -p "$B/crashes" "$B/logs"

one() {	# target name
	name=${1#fuzz_}
	mkdir -p "$B/corpus/$name" "tests/fuzz/corpus/$name"
	dict=""
	[ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
	"$B/$1" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 $dict \
		-artifact_prefix="$B/crashes/$name-" \
		"$B/corpus/$name" "tests/fuzz/corpus/$name" \
		> "$B/logs/$name.log" 2>&1
	rc=$?
	# this subshell's children are the fuzzer: its CPU seconds
	times > "$B/logs/$name.times"
	cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/);
		printf "%.0f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' \
		"$B/logs/$name.times")
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/logs/$name.log")
	if [ $rc = 0 ]; then
		echo "fuzz $name: ${runs:-?} runs in ${SECONDS_EACH}s (${cpu:-?} CPU s), no crash"
	else
		echo "fuzz $name: FAILED (exit $rc), see $B/logs/$name.log"
		tail -40 "$B/logs/$name.log"
	fi
	return $rc
}

fail=0
running=0
pids=""
for t in "$@"; do
	one "$t" &
	pids="$pids $!"
	running=$((running + 1))
	if [ $running -ge "$JOBS" ]; then
		for p in $pids; do wait "$p" || fail=1; done
		pids=""
		running=0
	fi
done
for p in $pids; do wait "$p" || fail=1; done
exit $fail
