package slo

import (
	_ "embed"
)

//go:embed defaults/defaults.yaml
var defaultsYAML []byte

// DefaultsYAML returns the built-in spec's YAML.
func DefaultsYAML() []byte { return append([]byte(nil), defaultsYAML...) }

// Defaults returns the built-in SLOs, health rules and roll-up: probe
// produce availability and end-to-end latency per cell, broker request
// errors, storage append and disk canary latency, storage degradation
// relative to the cell, unreachable brokers, heartbeats, fencing and
// under-min-ISR partitions, and Kora's probe latency roll-up.
func Defaults() *Spec {
	s, err := Parse("built-in defaults", defaultsYAML)
	if err != nil {
		panic(err) // TestDefaults keeps this from happening
	}
	return s
}
