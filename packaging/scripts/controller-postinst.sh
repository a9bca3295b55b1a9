#!/bin/sh
# palisade-controller post-install (deb: configure [old-version]; rpm: $1 =
# 1 install, 2 upgrade).
set -e

case "$1" in
configure) [ -n "$2" ] && action=upgrade || action=install ;;
1) action=install ;;
2) action=upgrade ;;
*) exit 0 ;;
esac

install -d -m 0755 /etc/palisade
install -d -m 0700 -o palisade -g palisade /var/lib/palisade-controller
if [ -f /etc/palisade/controller.yaml ]; then
	chown root:palisade /etc/palisade/controller.yaml
	chmod 0640 /etc/palisade/controller.yaml
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
	if [ "$action" = install ]; then
		systemctl enable palisade-controller.service >/dev/null || true
		echo "palisade-controller: enabled; configure with: palisade-controller install --node-id ID … --start"
	else
		systemctl try-restart palisade-controller.service || true
	fi
else
	echo "palisade-controller: systemd is not PID 1 here; palisade-controller.service was not enabled or started"
fi
exit 0
