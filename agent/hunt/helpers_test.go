package hunt

import (
	"io"
	"log/slog"

	"golang.org/x/sys/unix"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mkfifo(p string) error { return unix.Mkfifo(p, 0o600) }
