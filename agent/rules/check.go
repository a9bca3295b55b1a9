package rules

import (
	"fmt"
	"io"
	"log/slog"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Check compiles a bundle's rules, merged with the default pack, exactly
// as an agent will, without running anything: the controller calls it so
// that a policy whose rules an agent would refuse is refused at apply
// time, with each rule's file, line and CEL error (*ApplyError).
func Check(b *palisadev1.PolicyBundle) error {
	e, err := NewEngine(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return fmt.Errorf("rules engine: %w", err)
	}
	defaults, err := DefaultRules(b.GetDefaultMode())
	if err != nil {
		return err
	}
	return e.Apply(Merge(defaults, b.GetRules()))
}
