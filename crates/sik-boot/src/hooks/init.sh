#!/bin/sh
# sik: init= wrapper on the medium, written by `sik boot generate`. Runs as
# PID 1 of the booted system, links into / and then starts the real init.
MEDIUM="${0%/boot/sik/init}"
/bin/sh "$MEDIUM/boot/sik/boot.sh" / "$MEDIUM"
for i in /sbin/init /lib/systemd/systemd /usr/lib/systemd/systemd /bin/init /bin/sh; do
	[ -x "$i" ] && exec "$i" "$@"
done
