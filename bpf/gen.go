// Package bpf holds Palisade's eBPF programs (palisade.bpf.c) and the
// bpf2go-generated loader. The generated Go and .o files are committed so a
// plain `go build` needs no clang; regenerate with `go generate ./bpf` and
// check with bpf/check-generated.sh.
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -go-package bpf Palisade palisade.bpf.c -- -I.
