#!/bin/sh
# patchkeeper TEST DOUBLE for the guest's init system. Never part of a real guest.
#
# Runs as PID 1 of the test guest's own PID namespace, chrooted into the guest root. It keeps
# sshd running, and plays a reboot when the reboot double asks for one: by then every other
# process of the guest is dead; this script empties /run (a tmpfs, as on a real boot), binds
# a new id over /proc/sys/kernel/random/boot_id (what the runner reads to tell a reboot
# happened), waits a moment, and starts sshd again.
#
# Usage: pk-test-guest-init CONFIG
set -u
config=$1
boot_id_file=/var/lib/pk-test/boot_id

while :; do
	mkdir -p /run/sshd
	/usr/sbin/sshd -D -e -f "$config" 2>>/var/log/pk-test-sshd.log &
	wait $!
	if [ ! -e /run/pk-test-reboot-requested ]; then
		echo "pk-test-guest-init: sshd ended without a reboot request" >>/var/log/pk-test-sshd.log
		exit 1
	fi
	rm -rf /run/* 2>/dev/null
	sleep "${PK_TEST_REBOOT_PAUSE:-2}"
	mkdir -p /var/lib/pk-test
	cat /proc/sys/kernel/random/uuid >"$boot_id_file"
	umount /proc/sys/kernel/random/boot_id 2>/dev/null
	mount --bind "$boot_id_file" /proc/sys/kernel/random/boot_id
	echo "pk-test-guest-init: rebooted, boot id $(cat "$boot_id_file")" >>/var/log/pk-test-sshd.log
done
