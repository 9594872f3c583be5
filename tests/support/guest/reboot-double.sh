#!/bin/sh
# patchkeeper TEST DOUBLE for reboot(8), installed as /usr/local/sbin/reboot in the test
# guest only. A chroot cannot restart a kernel: this asks the init double to play a reboot,
# then kills every process of the guest's PID namespace except init (kill -1 spares it and
# the caller), which drops the runner's SSH connection as a real reboot would.
touch /run/pk-test-reboot-requested
kill -KILL -1
