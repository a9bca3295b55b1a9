#!/bin/sh
# palisade-controller pre-removal (deb: remove | upgrade | deconfigure; rpm:
# $1 = 0 erase, 1 upgrade). On upgrade the node keeps running until the new
# package restarts it.
set -e

case "$1" in
remove | deconfigure | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now palisade-controller.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
