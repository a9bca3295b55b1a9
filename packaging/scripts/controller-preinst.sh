#!/bin/sh
# palisade-controller pre-install: the system user the service runs as
# (created before unpacking, so the package's files get its group).
set -e

if ! getent group palisade >/dev/null; then
	groupadd --system palisade
fi
if ! getent passwd palisade >/dev/null; then
	useradd --system --gid palisade --home-dir /var/lib/palisade-controller \
		--no-create-home --shell /usr/sbin/nologin \
		--comment "Palisade controller" palisade
fi
exit 0
