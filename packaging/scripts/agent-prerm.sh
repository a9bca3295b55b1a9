#!/bin/sh
# palisade-agent pre-removal (deb: remove | upgrade | deconfigure; rpm: $1 =
# 0 erase, 1 upgrade). On upgrade the agent keeps running until the new
# package restarts it, and nothing touches the pinned BPF objects: a
# quarantine stays in force. Never run `palisade-agent cleanup` here.
set -e

case "$1" in
remove | deconfigure | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now palisade-agent.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
