// Command palisadectl is the admin CLI of the Palisade controller.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/palisade-sec/palisade/controller/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := ctl.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
