#!/bin/sh
# palisade-agent post-removal (deb: remove | purge | upgrade | …; rpm: $1 =
# 0 erase, 1 upgrade).
#
# The pinned BPF programs and maps (/sys/fs/bpf/palisade) keep enforcing,
# quarantine included, after `dpkg -r`; only a purge (or an rpm erase, rpm
# having no purge) removes them, which detaches the programs.
# PALISADE_PIN_ROOT overrides the pin root for the package tests only.
set -e

pins="${PALISADE_PIN_ROOT:-/sys/fs/bpf/palisade}"

case "$1" in
purge | 0)
	rm -rf "$pins"
	;;
esac
case "$1" in
purge)
	rm -rf /var/lib/palisade-agent
	rm -f /etc/palisade/agent.yaml /etc/palisade/agent.yaml.dpkg-*
	rmdir /etc/palisade 2>/dev/null || true
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
