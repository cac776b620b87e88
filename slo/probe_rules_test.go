package slo

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// probeRules are the default health rules over the probes' produce
// failures that TestProbeHealthRules evaluates, with the signal each
// raises. A rule that raises the same signal (a faster variant, say) is
// tested against the same expectations by adding a line here.
var probeRules = []struct{ rule, signal string }{
	{"unreachable-from-locations", "unreachable"},
	{"probe-failing", "probe_failing"},
}

// probeFailure is a (cell, broker, location) whose probe produces fail.
type probeFailure struct{ cell, broker, location string }

func (f probeFailure) String() string { return f.cell + "/" + f.broker + "@" + f.location }

// writeProbeFleet writes the probe counters of cluster c1, cells a and b
// of brokers 0, 1 and 2, probed from locations l1 and l2, scraped every
// 15 s from 0 to 6m: vigil_probe_attempts_total{op="produce"} grows by 15
// a scrape (one attempt a second), and every (broker, location) has a
// vigil_probe_failures_total{class="timeout"} that failed once before
// the start and stays flat. From 2m on, every attempt of the failing
// (broker, location)s fails: their failures{class="connection_refused"}
// grow as fast as their attempts. Metadata and commit counters, which
// the rules must ignore, fail everywhere throughout.
func writeProbeFleet(t *testing.T, app appFunc, failing []probeFailure) {
	t.Helper()
	fails := map[probeFailure]bool{}
	for _, f := range failing {
		fails[f] = true
	}
	for i := 0; i <= 6*4; i++ {
		ts := time.Duration(i) * scrape
		for _, cell := range []string{"a", "b"} {
			for _, b := range []string{"0", "1", "2"} {
				for _, loc := range []string{"l1", "l2"} {
					base := []string{"cluster", "c1", "cell", cell, "broker", b, "location", loc, "job", "probe"}
					add := func(name string, v float64, kv ...string) {
						if err := app(labels.FromStrings(append(append([]string{"__name__", name}, base...), kv...)...), ts.Milliseconds(), v); err != nil {
							t.Fatal(err)
						}
					}
					attempts := 15 * float64(i)
					var refused float64
					if fails[probeFailure{cell, b, loc}] && ts > 2*time.Minute {
						refused = 15 * float64(i-8)
					}
					add("vigil_probe_attempts_total", attempts, "op", "produce")
					add("vigil_probe_failures_total", 1, "op", "produce", "class", "timeout")
					add("vigil_probe_failures_total", refused, "op", "produce", "class", "connection_refused")
					for _, op := range []string{"metadata", "commit"} {
						add("vigil_probe_attempts_total", attempts, "op", op)
						add("vigil_probe_failures_total", attempts, "op", op, "class", "timeout")
					}
				}
			}
		}
	}
}

// The probe health rules over synthetic probe series: one broker failing
// from two locations while the rest of its cell is fine is unreachable;
// one location failing (towards one broker, or towards every broker: the
// probe's own network) is only probe_failing (info); a whole cell failing
// from everywhere is not one unreachable broker.
func TestProbeHealthRules(t *testing.T) {
	spec := &Spec{}
	for _, pr := range probeRules {
		i := slices.IndexFunc(Defaults().HealthRules, func(r HealthRule) bool { return r.Name == pr.rule })
		if i < 0 {
			t.Fatalf("no default health rule %s", pr.rule)
		}
		r := Defaults().HealthRules[i]
		if r.Signal != pr.signal {
			t.Fatalf("rule %s raises %s, want %s", pr.rule, r.Signal, pr.signal)
		}
		spec.HealthRules = append(spec.HealthRules, r)
	}
	all := func(cell string, locs ...string) []probeFailure {
		var fs []probeFailure
		for _, b := range []string{"0", "1", "2"} {
			for _, l := range locs {
				fs = append(fs, probeFailure{cell, b, l})
			}
		}
		return fs
	}
	// want lists, per signal, the signals expected after 4 minutes of
	// failures: cell/broker for unreachable, cell/broker@location for
	// probe_failing.
	for _, tc := range []struct {
		name    string
		failing []probeFailure
		want    map[string][]string
	}{
		{name: "healthy", want: map[string][]string{}},
		{
			name:    "broker 2 fails from both locations",
			failing: []probeFailure{{"a", "2", "l1"}, {"a", "2", "l2"}},
			want:    map[string][]string{"unreachable": {"a/2"}, "probe_failing": {"a/2@l1", "a/2@l2"}},
		},
		{
			name:    "broker 2 fails from one location",
			failing: []probeFailure{{"a", "2", "l1"}},
			want:    map[string][]string{"probe_failing": {"a/2@l1"}},
		},
		{
			name:    "every broker fails from one location (the probe's network)",
			failing: all("a", "l1"),
			want:    map[string][]string{"probe_failing": {"a/0@l1", "a/1@l1", "a/2@l1"}},
		},
		{
			name:    "the whole cell fails from both locations",
			failing: all("a", "l1", "l2"),
			want:    map[string][]string{"probe_failing": {"a/0@l1", "a/0@l2", "a/1@l1", "a/1@l2", "a/2@l1", "a/2@l2"}},
		},
		{
			name:    "broker 2 of cell a unreachable while cell b fails everywhere",
			failing: append([]probeFailure{{"a", "2", "l1"}, {"a", "2", "l2"}}, all("b", "l1", "l2")...),
			want: map[string][]string{"unreachable": {"a/2"},
				"probe_failing": {"a/2@l1", "a/2@l2", "b/0@l1", "b/0@l2", "b/1@l1", "b/1@l2", "b/2@l1", "b/2@l2"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTestDB(t)
			a := db.Appender(context.Background())
			writeProbeFleet(t, func(l labels.Labels, ts int64, v float64) error { _, err := a.Append(0, l, ts, v); return err }, tc.failing)
			if err := a.Commit(); err != nil {
				t.Fatal(err)
			}
			clock := &fakeClock{}
			e, err := New(Config{Spec: spec, Raw: &LocalQuerier{Engine: NewPromQLEngine(nil), Store: db}, Store: db, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			failStart := time.UnixMilli(0).Add(2 * time.Minute)
			for at := scrape; at <= 6*time.Minute; at += scrape {
				clock.t = time.UnixMilli(0).Add(at)
				if err := e.Cycle(context.Background()); err != nil {
					t.Fatal(err)
				}
				for _, s := range e.Signals() {
					// Nothing fires before the failures start, nor
					// claims to hold since before they did.
					if !s.Since.After(failStart) {
						t.Fatalf("at %s: %s since %v, before the failures started at 2m", at, s.ID, s.Since.UTC())
					}
				}
			}
			got := map[string][]string{}
			for _, s := range e.Signals() {
				k := s.Labels["cell"] + "/" + s.Labels["broker"]
				if l := s.Labels["location"]; l != "" {
					k += "@" + l
				}
				got[s.Rule] = append(got[s.Rule], k)
				if s.Labels["cluster"] != "c1" || len(s.Evidence) != 1 || !(s.Evidence[0].Value > 0.5) || s.Evidence[0].Expr == "" {
					t.Errorf("signal %+v: want cluster c1 and the rule's value as evidence", s)
				}
			}
			for _, pr := range probeRules {
				sort.Strings(got[pr.rule])
				want := tc.want[pr.signal]
				if fmt.Sprint(got[pr.rule]) != fmt.Sprint(want) {
					t.Errorf("rule %s (%s): signals %v, want %v (failing: %v)", pr.rule, pr.signal, got[pr.rule], want, tc.failing)
				}
				for _, s := range e.Signals() {
					if s.Rule == pr.rule && s.Name != pr.signal {
						t.Errorf("rule %s raised %s, want %s", pr.rule, s.Name, pr.signal)
					}
				}
			}
			if t.Failed() {
				var ids []string
				for _, s := range e.Signals() {
					ids = append(ids, s.ID)
				}
				t.Logf("signals at 6m:\n%s", strings.Join(ids, "\n"))
			}
		})
	}
}
