package slo

import (
	_ "embed"
	"slices"
)

//go:embed defaults/defaults.yaml
var defaultsYAML []byte

//go:embed defaults/fast.yaml
var fastYAML []byte

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

// FastRulesYAML returns the YAML of the fast health rules (FastDefaults).
func FastRulesYAML() []byte { return append([]byte(nil), fastYAML...) }

// FastDefaults returns the built-in spec with the health rules of the
// signals the mitigator acts on (storage_degraded, storage_stuck,
// unreachable, followers_not_fetching, slow_follower) replaced by
// short-window versions ([5s]/[10s] rates, `for` of seconds) for an engine
// that scrapes every second: `vigil dev` runs it to meet the detection
// bar (docs/slo.md).
func FastDefaults() *Spec {
	fast, err := Parse("built-in fast rules", fastYAML)
	if err != nil {
		panic(err) // TestFastDefaults keeps this from happening
	}
	return Override(Defaults(), fast)
}

// Override returns base with the SLOs, health rules and roll-ups of over
// replacing those of base with the same name, in base's order, and the
// others of over appended.
func Override(base, over *Spec) *Spec {
	return &Spec{
		SLOs:           overrideByName(base.SLOs, over.SLOs, func(x SLO) string { return x.Name }),
		HealthRules:    overrideByName(base.HealthRules, over.HealthRules, func(x HealthRule) string { return x.Name }),
		LatencyRollups: overrideByName(base.LatencyRollups, over.LatencyRollups, func(x LatencyRollup) string { return x.Name }),
	}
}

// overrideByName is base with the items of over replacing those of the
// same name in place, and the others of over appended.
func overrideByName[T any](base, over []T, name func(T) string) []T {
	out := slices.Clone(base)
	at := make(map[string]int, len(base))
	for i, x := range base {
		at[name(x)] = i
	}
	for _, x := range over {
		if i, ok := at[name(x)]; ok {
			out[i] = x
		} else {
			out = append(out, x)
		}
	}
	return out
}
