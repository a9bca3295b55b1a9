// Package systemd holds Palisade's systemd units. The packages install
// these files as they are; `palisade-agent install` and
// `palisade-controller install` (internal/svc) write the same unit when no
// package provides one, so there is one copy of the hardening.
package systemd

import _ "embed"

// Agent is palisade-agent.service.
//
//go:embed palisade-agent.service
var Agent string

// Controller is palisade-controller.service.
//
//go:embed palisade-controller.service
var Controller string
