#!/bin/bash
# make check-systemd: the whole product under a real systemd.
#
# Boots Debian 12's systemd as PID 1 in systemd-nspawn (a root made with
# debootstrap from Debian's packages, cached in $SOCKMAIL_NSPAWN_CACHE,
# default /var/tmp/sockmail-nspawn), installs sockmail into it with
# `make install DESTDIR=`, runs `systemctl enable --now sockmail.target`
# inside, and then runs tests/systemd/test_system.py from the host inside
# the container's network namespace, so 127.0.0.1 reaches the container's
# sockets.  On a failure the container's journal is printed.  Root only.
#
# On a host whose PID 1 is not systemd (CI VMs, containers), nspawn runs
# with --register=no --keep-unit in a cgroup of its own, made here.
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
TOP=$(pwd)
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
CACHE=${SOCKMAIL_NSPAWN_CACHE:-/var/tmp/sockmail-nspawn}
SUITE=bookworm
ROOT_FORMAT=1
PACKAGES="systemd,systemd-sysv,dbus,libtdb1,libgnutls30,passwd,procps"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[check-systemd %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || { echo "check-systemd: skipped (needs root)"; exit 0; }
for tool in systemd-nspawn debootstrap nsenter; do
	command -v $tool >/dev/null || die "$tool missing (make deps installs systemd-container, debootstrap)"
done

mirror() {
	local m
	m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$m" ] || m=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
	echo "${m:-http://deb.debian.org/debian}"
}

# The Debian root, built once and reused: about 200 MB, a few minutes.
MIRROR=$(mirror)
KEY=$(printf '%s\n' $ROOT_FORMAT $SUITE "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-12)
ROOT="$CACHE/root-$KEY"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "cache lock"
if [ ! -f "$ROOT/.built" ]; then
	log "building the Debian root with debootstrap (cached in $ROOT)"
	rm -rf "$ROOT.tmp"
	timeout 900 debootstrap --variant=minbase --include="$PACKAGES" \
		$SUITE "$ROOT.tmp" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 ||
		{ tail -20 "$CACHE/debootstrap.log"; die "debootstrap"; }
	rm -rf "$ROOT.tmp"/var/cache/apt/archives/*.deb
	systemctl --root="$ROOT.tmp" mask --quiet console-getty.service \
		getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
		dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
		systemd-firstboot.service 2>/dev/null || true
	echo sockmail-test > "$ROOT.tmp/etc/hostname"
	touch "$ROOT.tmp/.built"
	mv "$ROOT.tmp" "$ROOT"
fi
flock -u 9

NAME="sockmail-test-$$"
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
MERGED="$RUN/root"
mkdir -p "$RUN/upper" "$RUN/work" "$MERGED"
NSPAWN_PID="" LEADER="" CGDIRS=() MOUNTED=0

cleanup() {
	local rc=$? d p
	set +e
	if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		kill -TERM "$NSPAWN_PID"	# nspawn asks systemd to power off
		for _ in $(seq 300); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$NSPAWN_PID" 2>/dev/null
	fi
	for d in "${CGDIRS[@]}"; do
		for p in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null
		done
	done
	sleep 0.2
	for d in "${CGDIRS[@]}"; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	[ "$MOUNTED" = 1 ] && { umount "$MERGED" 2>/dev/null || umount -l "$MERGED"; }
	rm -rf "$RUN"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$RUN/upper,workdir=$RUN/work" "$MERGED"
MOUNTED=1

log "make install DESTDIR=$MERGED"
make --no-print-directory -s install DESTDIR="$MERGED" PREFIX=/usr BUILD="$BUILD" >/dev/null

# The test's certificate and configuration (the installed example stays
# as the sysadmin's starting point; this replaces it).
certtool --generate-privkey --key-type=ecdsa --outfile "$MERGED/etc/sockmail/key.pem" 2>/dev/null
printf 'cn = mail.example.test\ndns_name = mail.example.test\nexpiration_days = 2\ntls_www_server\n' > "$RUN/cert.cfg"
certtool --generate-self-signed --load-privkey "$MERGED/etc/sockmail/key.pem" \
	--template "$RUN/cert.cfg" --outfile "$MERGED/etc/sockmail/cert.pem" 2>/dev/null
chmod 0640 "$MERGED/etc/sockmail/key.pem"

log "systemd-analyze verify on the installed units"
units=$(cd "$MERGED/lib/systemd/system" 2>/dev/null && ls sockmail* || true)
[ -n "$units" ] || units=$(cd "$MERGED/usr/lib/systemd/system" && ls sockmail*)
unitdir=$(dirname "$(find "$MERGED" -path '*/systemd/system/sockmail.target' | head -1)")
out=$(cd "$unitdir" && systemd-analyze verify --root="$MERGED" --man=no $units 2>&1) ||
	{ echo "$out"; die "systemd-analyze verify"; }
[ -z "$out" ] || { echo "$out"; die "systemd-analyze verify printed something"; }

NSPAWN_ARGS=(--quiet --boot --register=no -D "$MERGED" -M "$NAME"
	     --console=read-only --private-network)
if [ ! -d /run/systemd/system ]; then
	NSPAWN_ARGS+=(--keep-unit)
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		CGDIRS=("/sys/fs/cgroup/$NAME")
	else
		[ -d /sys/fs/cgroup/systemd ] && CGDIRS+=("/sys/fs/cgroup/systemd/$NAME")
		[ -d /sys/fs/cgroup/unified ] && CGDIRS+=("/sys/fs/cgroup/unified/$NAME")
	fi
	for d in "${CGDIRS[@]}"; do mkdir -p "$d"; done
fi

log "booting systemd in the container"
(
	for d in "${CGDIRS[@]}"; do echo "$BASHPID" > "$d/cgroup.procs"; done
	exec systemd-nspawn "${NSPAWN_ARGS[@]}"
) > "$RUN/console.log" 2>&1 < /dev/null &
NSPAWN_PID=$!
deadline=$(( $(date +%s) + 90 ))
while [ -z "$LEADER" ]; do
	kill -0 "$NSPAWN_PID" 2>/dev/null || { cat "$RUN/console.log"; die "nspawn exited"; }
	for c in $(ps -o pid= --ppid "$NSPAWN_PID" 2>/dev/null); do
		[ "$(awk '/^NSpid:/{print $NF}' "/proc/$c/status" 2>/dev/null)" = 1 ] && LEADER=$c
	done
	[ "$(date +%s)" -lt "$deadline" ] || die "no PID 1 in the container"
	[ -n "$LEADER" ] || sleep 0.1
done
INSIDE=(nsenter -t "$LEADER" -m -u -i -n -p -C --)
while :; do
	state=$(timeout 5 "${INSIDE[@]}" systemctl is-system-running 2>/dev/null) || true
	case "$state" in running|degraded) break;; esac
	[ "$(date +%s)" -lt "$deadline" ] || die "boot did not finish ($state)"
	sleep 0.3
done
log "systemd is up ($state)"

journal() {
	log "---- the container's journal (last 200 lines) ----"
	timeout 20 "${INSIDE[@]}" journalctl --no-pager -b -n 200 -o short-monotonic >&2 || true
}

export SBOX_ROOT="$MERGED" SBOX_PID="$LEADER" BUILD TOP
export SBOX_EXEC="nsenter -t $LEADER -m -u -i -n -p -C --"
if ! timeout 600 nsenter -t "$LEADER" -n -- "$PYTHON" tests/systemd/test_system.py; then
	journal
	die "tests/systemd/test_system.py"
fi
log "passed"
