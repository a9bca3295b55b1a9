#!/bin/sh
# palisade-agent post-install (deb: configure [old-version]; rpm: $1 = 1
# install, 2 upgrade).
set -e

case "$1" in
configure) [ -n "$2" ] && action=upgrade || action=install ;;
1) action=install ;;
2) action=upgrade ;;
*) exit 0 ;;
esac

install -d -m 0755 /etc/palisade
install -d -m 0700 /var/lib/palisade-agent
chmod 0640 /etc/palisade/agent.yaml 2>/dev/null || true

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
	if [ "$action" = install ]; then
		systemctl enable palisade-agent.service >/dev/null || true
		echo "palisade-agent: enabled; enrol with: palisade-agent enroll --controller URL --enroll-token TOKEN"
	else
		# The new agent adopts the pinned programs and maps; enforcement
		# (a quarantine included) holds while it restarts.
		systemctl try-restart palisade-agent.service || true
	fi
else
	echo "palisade-agent: systemd is not PID 1 here; palisade-agent.service was not enabled or started"
fi
exit 0
