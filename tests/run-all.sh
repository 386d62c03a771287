#!/bin/sh
# run-all.sh: run the unit tests (every $BUILD/tests/test_* cmocka binary)
# and/or the end-to-end tests (tests/e2e, Python unittest), then print one
# summary line "N passed, N failed" counting individual tests, and exit
# non-zero if anything failed.
#
#   sh tests/run-all.sh [unit|e2e]      (default: both)
#
# Environment: BUILD (default "build", relative to the repo root),
# PYTHON (default /usr/bin/python3), VALGRIND=1 (`make check VALGRIND=1`:
# the end-to-end tests run every handler and queue runner under valgrind,
# through SOCKMAIL_VALGRIND=1, see tests/e2e/harness.py).  Builds nothing:
# `make check` does.

cd "$(dirname "$0")/.." || exit 2

BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
export BUILD PYTHON

what=${1:-all}
case $what in
unit | e2e | all) ;;
*)
	echo "usage: sh tests/run-all.sh [unit|e2e]" >&2
	exit 2
	;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/run-all.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0

# cmocka_counts LOG: print "P F" summed over every group in LOG, from the
# "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s), listed below:"
# lines (not the per-test "[  FAILED  ] name" lines).
cmocka_counts() {
	awk '
	/^\[  PASSED  \] [0-9]+ test\(s\)\./ { p += $4 }
	/^\[  FAILED  \] [0-9]+ test\(s\)/   { f += $4 }
	END { printf "%d %d\n", p, f }' "$1"
}

run_unit() {
	found=0
	for t in "$BUILD"/tests/test_*; do
		if [ ! -f "$t" ] || [ ! -x "$t" ]; then
			continue
		fi
		found=1
		name=${t##*/}
		log="$tmp/$name.log"
		echo "== $name"
		# cmocka's default output format is the one parsed here
		{
			CMOCKA_MESSAGE_OUTPUT=STDOUT "$t" 2>&1
			echo $? >"$tmp/rc"
		} | tee "$log"
		rc=$(cat "$tmp/rc")
		# shellcheck disable=SC2046 # "P F": split on purpose
		set -- $(cmocka_counts "$log")
		p=$1 f=$2
		# a crash, a sanitizer report at exit or a failed group
		# setup shows only in the exit status: count it as a failure
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
			echo "== $name: exit status $rc" >&2
			f=1
		fi
		passed=$((passed + p))
		failed=$((failed + f))
	done
	if [ $found -eq 0 ]; then
		echo "== no unit test binaries in $BUILD/tests/" >&2
	fi
}

# unittest_counts LOG: print "P F" from "Ran N tests" and the final
# "OK (...)" / "FAILED (failures=F, errors=E, skipped=S, ...)" line.
# Skipped tests count as neither passed nor failed.
unittest_counts() {
	awk '
	/^Ran [0-9]+ tests? in / { ran = $2; seen = 1 }
	/^(OK|FAILED)( \(.*\))?$/ {
		s = $0; bad = 0; skip = 0
		sub(/^[A-Z]+ ?\(?/, "", s); sub(/\)$/, "", s)
		n = split(s, kv, /, /)
		for (i = 1; i <= n; i++) {
			split(kv[i], a, "=")
			if (a[1] == "failures" || a[1] == "errors" ||
			    a[1] == "unexpected successes")
				bad += a[2]
			else if (a[1] == "skipped" || a[1] == "expected failures")
				skip += a[2]
		}
	}
	END {
		if (!seen) { print "0 0 0"; exit }
		printf "%d %d 1\n", ran - bad - skip, bad
	}' "$1"
}

run_e2e() {
	log="$tmp/e2e.log"
	if [ "${VALGRIND:-0}" = 1 ]; then
		if [ "${SANITIZE:-0}" = 1 ]; then
			# ASan's shadow memory and valgrind exclude each other
			echo "== e2e: VALGRIND=1 and SANITIZE=1 do not mix" >&2
			failed=$((failed + 1))
			return
		fi
		if [ ! -x /usr/bin/valgrind ]; then
			echo "== e2e: VALGRIND=1 needs valgrind (apt-get install valgrind)" >&2
			failed=$((failed + 1))
			return
		fi
		SOCKMAIL_VALGRIND=1
		export SOCKMAIL_VALGRIND
		echo "== e2e ($PYTHON, BUILD=$BUILD, under valgrind: slow)"
	else
		echo "== e2e ($PYTHON, BUILD=$BUILD)"
	fi
	{
		"$PYTHON" -m unittest discover -s tests/e2e -p 'test_*.py' -v 2>&1
		echo $? >"$tmp/rc"
	} | tee "$log"
	rc=$(cat "$tmp/rc")
	# shellcheck disable=SC2046 # "P F SEEN": split on purpose
	set -- $(unittest_counts "$log")
	p=$1 f=$2 seen=$3
	if [ "$seen" -eq 0 ] || { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; }; then
		echo "== e2e: unittest exit status $rc" >&2
		f=$((f + 1))
	fi
	passed=$((passed + p))
	failed=$((failed + f))
}

case $what in
unit) run_unit ;;
e2e) run_e2e ;;
all)
	run_unit
	run_e2e
	;;
esac

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
