#!/bin/sh
# `make run`: a demo sockmail on loopback high ports, state in ./run/.
# Creates the demo domain example.test with user demo@example.test
# (password "demo"), a self-signed certificate, and serves SMTP on
# 127.0.0.1:2525 until Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
top=$(pwd)
run="$top/run"
mkdir -p "$run/mail" "$run/state" "$run/spool"
conf="$run/sockmail.conf"
cat > "$conf" <<CONF
# written by make run
hostname = mail.example.test
mail_dir = $run/mail
state_dir = $run/state
spool_dir = $run/spool
CONF
if [ ! -f "$run/cert.pem" ] && command -v certtool >/dev/null 2>&1; then
	certtool --generate-privkey --key-type=ecdsa --outfile "$run/key.pem" >/dev/null 2>&1
	cat > "$run/cert.cfg" <<CFG
cn = mail.example.test
dns_name = mail.example.test
dns_name = localhost
expiration_days = 365
tls_www_server
CFG
	certtool --generate-self-signed --load-privkey "$run/key.pem" \
		--template "$run/cert.cfg" --outfile "$run/cert.pem" >/dev/null 2>&1
fi
ctl="$BUILD/sockmailctl -c $conf"
$ctl domain list 2>/dev/null | grep -qx example.test || $ctl domain add example.test
$ctl user list example.test | grep -qx demo@example.test ||
	echo demo | $ctl user add demo@example.test --password-stdin
$ctl alias list example.test | grep -q '^postmaster@example.test' ||
	$ctl alias add postmaster@example.test demo@example.test

SMTP_PORT=${SMTP_PORT:-2525}
pids=""
trap 'kill $pids 2>/dev/null; exit 0' INT TERM EXIT
systemd-socket-activate --inetd --accept -l 127.0.0.1:$SMTP_PORT \
	"$top/$BUILD/smtp-handler" -c "$conf" &
pids="$pids $!"
cat <<MSG

sockmail is running (state in $run):
  SMTP  127.0.0.1:$SMTP_PORT   (inbound MX: mail for demo@example.test)
  Maildir of demo@example.test: $run/mail/example.test/demo/

Try:  swaks --server 127.0.0.1:$SMTP_PORT --to demo@example.test
Stop with Ctrl-C.
MSG
wait
