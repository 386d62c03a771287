#!/bin/sh
# `make run`: a demo sockmail on loopback high ports, state in ./run/.
# Creates the demo domain example.test with user demo@example.test
# (password "demo"), a self-signed certificate, and serves SMTP, POP3 and IMAP on
# loopback high ports until Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
top=$(pwd)
run="$top/run"
mkdir -p "$run/mail" "$run/state" "$run/spool"
conf="$run/sockmail.conf"
if [ ! -f "$run/cert.pem" ] && command -v certtool >/dev/null 2>&1; then
	certtool --generate-privkey --key-type=ecdsa --outfile "$run/key.pem" >/dev/null 2>&1
	cat > "$run/cert.cfg" <<CFG
cn = mail.example.test
dns_name = mail.example.test
dns_name = localhost
ip_address = 127.0.0.1
expiration_days = 365
tls_www_server
CFG
	certtool --generate-self-signed --load-privkey "$run/key.pem" \
		--template "$run/cert.cfg" --outfile "$run/cert.pem" >/dev/null 2>&1
fi
cat > "$conf" <<CONF
# written by make run
hostname = mail.example.test
mail_dir = $run/mail
state_dir = $run/state
spool_dir = $run/spool
sendmail_socket = $run/sendmail.sock
CONF
[ -f "$run/cert.pem" ] && printf 'tls_cert = %s\ntls_key = %s\n' \
	"$run/cert.pem" "$run/key.pem" >> "$conf"
ctl="$BUILD/sockmailctl -c $conf"
$ctl domain list 2>/dev/null | grep -qx example.test || $ctl domain add example.test
$ctl user list example.test | grep -qx demo@example.test ||
	echo demo | $ctl user add demo@example.test --password-stdin
$ctl alias list example.test | grep -q '^postmaster@example.test' ||
	$ctl alias add postmaster@example.test demo@example.test

SMTP_PORT=${SMTP_PORT:-2525}
SUBMISSION_PORT=${SUBMISSION_PORT:-2587}
SUBMISSIONS_PORT=${SUBMISSIONS_PORT:-2465}
POP3_PORT=${POP3_PORT:-1110}
POP3S_PORT=${POP3S_PORT:-1995}
IMAP_PORT=${IMAP_PORT:-1143}
IMAPS_PORT=${IMAPS_PORT:-1993}
pids=""
trap 'kill $pids 2>/dev/null; exit 0' INT TERM EXIT
serve() {	# port, program, arguments...
	port=$1
	shift
	systemd-socket-activate --inetd --accept -l 127.0.0.1:$port "$@" \
		2>>"$run/handlers.log" &
	pids="$pids $!"
}
serve $SMTP_PORT "$top/$BUILD/smtp-handler" -c "$conf"
serve $SUBMISSION_PORT "$top/$BUILD/smtp-handler" -c "$conf" --submission
serve $SUBMISSIONS_PORT "$top/$BUILD/smtp-handler" -c "$conf" --submission --tls=implicit
rm -f "$run/sendmail.sock"
systemd-socket-activate --inetd --accept -l "$run/sendmail.sock" \
	"$top/$BUILD/smtp-handler" -c "$conf" --local 2>>"$run/handlers.log" &
pids="$pids $!"
# The queue runner, every 30 s (under systemd: a timer and a path unit).
(while sleep 30; do "$top/$BUILD/queue-runner" -c "$conf"; done) \
	2>>"$run/handlers.log" &
pids="$pids $!"
serve $POP3_PORT "$top/$BUILD/pop3-handler" -c "$conf"
serve $POP3S_PORT "$top/$BUILD/pop3-handler" -c "$conf" --tls=implicit
serve $IMAP_PORT "$top/$BUILD/imap-handler" -c "$conf"
serve $IMAPS_PORT "$top/$BUILD/imap-handler" -c "$conf" --tls=implicit
cat <<MSG

sockmail is running (state in $run, handler logs in $run/handlers.log):
  SMTP   127.0.0.1:$SMTP_PORT   inbound MX: mail for demo@example.test
                          (STARTTLS; AUTH PLAIN/LOGIN)
  submission 127.0.0.1:$SUBMISSION_PORT (STARTTLS) and $SUBMISSIONS_PORT (implicit TLS):
                          send as demo@example.test after AUTH
  sendmail   $BUILD/sendmail -c $conf -t < message
  queue      $BUILD/queue-runner runs every 30 s;
             $BUILD/sockmailctl -c $conf queue list
  POP3   127.0.0.1:$POP3_PORT   STLS, USER/PASS, AUTH PLAIN
  POP3S  127.0.0.1:$POP3S_PORT   implicit TLS
  IMAP   127.0.0.1:$IMAP_PORT   STARTTLS, LOGIN, AUTHENTICATE PLAIN, IDLE
  IMAPS  127.0.0.1:$IMAPS_PORT   implicit TLS
  login: demo@example.test  password: demo   (self-signed certificate:
  $run/cert.pem)

Try:  swaks --server 127.0.0.1:$SMTP_PORT --to demo@example.test
      curl -k pop3s://demo%40example.test:demo@127.0.0.1:$POP3S_PORT/1
      curl -k 'imaps://demo%40example.test:demo@127.0.0.1:$IMAPS_PORT/INBOX;UID=1'
In a mail client: incoming IMAP 127.0.0.1 port $IMAP_PORT (STARTTLS) or
$IMAPS_PORT (SSL/TLS), or POP3 port $POP3_PORT (STARTTLS) or $POP3S_PORT (SSL/TLS);
outgoing SMTP 127.0.0.1 port $SUBMISSION_PORT (STARTTLS)
or $SUBMISSIONS_PORT (SSL/TLS); user demo@example.test.
Stop with Ctrl-C.
MSG
wait
