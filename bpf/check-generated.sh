#!/bin/sh
# Checks that the committed bpf2go output (palisade_bpfel.go/.o) matches
# what palisade.bpf.c compiles to now. Needs clang; exits 0 with a note when
# clang is missing (the committed objects are what the build uses).
# Usage: bpf/check-generated.sh   (from anywhere in the repo)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
if ! command -v clang >/dev/null 2>&1; then
	echo "check-generated: clang not installed, skipping" >&2
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && go build -o "$tmp/bpf2go" github.com/cilium/ebpf/cmd/bpf2go)
mkdir "$tmp/src"
cp -r "$here/palisade.bpf.c" "$here/palisade.h" "$here/include" "$tmp/src/"
# Same flags as gen.go.
(cd "$tmp/src" && GOPACKAGE=bpf "$tmp/bpf2go" -cc clang -cflags "-O2 -g -Wall -Werror" \
	-target bpfel -go-package bpf Palisade palisade.bpf.c -- -I. >/dev/null)
status=0
for f in palisade_bpfel.go palisade_bpfel.o; do
	if ! cmp -s "$tmp/src/$f" "$here/$f"; then
		echo "check-generated: bpf/$f is stale: run 'go generate ./bpf' and commit" >&2
		status=1
	fi
done
[ $status -eq 0 ] && echo "check-generated: bpf/ generated files are up to date"
exit $status
