#!/bin/sh
# palisade-controller post-removal (deb: remove | purge | upgrade | …; rpm:
# $1 = 0 erase, 1 upgrade). A purge deletes this node's Raft log, JetStream
# store and admin token, and the palisade user.
set -e

case "$1" in
purge)
	rm -rf /var/lib/palisade-controller
	rm -f /etc/palisade/controller.yaml /etc/palisade/controller.yaml.dpkg-*
	rmdir /etc/palisade 2>/dev/null || true
	if getent passwd palisade >/dev/null; then
		userdel palisade >/dev/null 2>&1 || true
	fi
	if getent group palisade >/dev/null; then
		groupdel palisade >/dev/null 2>&1 || true
	fi
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
