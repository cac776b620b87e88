package slo

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// compiled holds the PromQL the engine runs for one SLO.
type compiled struct {
	slo *SLO
	// good and total return per-group event rates over one step; bad
	// is set instead of good when the spec gives bad events.
	good, bad, total string
	// goodBy, badBy and totalBy are the same summed by extra labels (for
	// evidence), with %s where the label list goes and %w where the
	// range goes.
	raw struct{ good, bad, total string }
	// windows are the windows reported, ascending, ending with the SLO's;
	// windowNames their PromQL spelling.
	windows     []time.Duration
	windowNames []string
}

// promDuration formats d for PromQL.
func promDuration(d time.Duration) string { return model.Duration(d).String() }

func byClause(labels []string) string {
	return "sum by (" + strings.Join(labels, ", ") + ") "
}

// leRegex matches the le label of a bucket bound however an exposition
// renders it: 0.25, 1, 1.0, 1e+06 ...
func leRegex(v float64) string {
	alts := map[string]bool{
		strconv.FormatFloat(v, 'g', -1, 64): true,
		strconv.FormatFloat(v, 'f', -1, 64): true,
		strconv.FormatFloat(v, 'e', -1, 64): true,
	}
	if v == float64(int64(v)) {
		alts[strconv.FormatFloat(v, 'f', 1, 64)] = true
	}
	var out []string
	for a := range alts {
		out = append(out, strings.ReplaceAll(strings.ReplaceAll(a, ".", `\\.`), "+", `\\+`))
	}
	slices.Sort(out)
	return strings.Join(out, "|")
}

func compile(s *SLO, step time.Duration, windows []time.Duration) (*compiled, error) {
	c := &compiled{slo: s}
	switch {
	case s.SLI.Ratio != nil:
		c.raw.good, c.raw.bad, c.raw.total = s.SLI.Ratio.Good, s.SLI.Ratio.Bad, s.SLI.Ratio.Total
	case s.SLI.Latency != nil:
		l := s.SLI.Latency
		sel, err := parseSelector(l.Selector)
		if err != nil {
			return nil, err
		}
		join := func(extra string) string {
			if sel == "" {
				return "{" + extra + "}"
			}
			if extra == "" {
				return "{" + sel + "}"
			}
			return "{" + extra + ", " + sel + "}"
		}
		c.raw.good = fmt.Sprintf("rate(%s_bucket%s[%s])", l.Metric, join(`le=~"`+leRegex(l.Threshold)+`"`), WindowPlaceholder)
		c.raw.total = fmt.Sprintf("rate(%s_count%s[%s])", l.Metric, join(""), WindowPlaceholder)
	default:
		return nil, fmt.Errorf("SLO %s has no SLI", s.Name)
	}
	w := promDuration(step)
	at := func(e string) string {
		if e == "" {
			return ""
		}
		return byClause(s.GroupBy) + "(" + strings.ReplaceAll(e, WindowPlaceholder, w) + ")"
	}
	c.good, c.bad, c.total = at(c.raw.good), at(c.raw.bad), at(c.raw.total)
	for _, e := range []string{c.good, c.bad, c.total} {
		if e == "" {
			continue
		}
		if _, err := promParser.ParseExpr(e); err != nil {
			return nil, fmt.Errorf("SLO %s: %v", s.Name, err)
		}
	}
	seen := map[time.Duration]bool{}
	add := func(d time.Duration) {
		if d > 0 && d <= s.Window.D() && !seen[d] {
			seen[d] = true
			c.windows = append(c.windows, d)
		}
	}
	for _, d := range windows {
		add(d)
	}
	for _, r := range c.pageRules() {
		add(r.Long.D())
		add(r.Short.D())
	}
	for _, r := range c.ticketRules() {
		add(r.Long.D())
		add(r.Short.D())
	}
	add(s.Window.D())
	slices.Sort(c.windows)
	for _, d := range c.windows {
		c.windowNames = append(c.windowNames, promDuration(d))
		if d%step != 0 {
			return nil, fmt.Errorf("SLO %s: window %s is not a multiple of the recording step %s", s.Name, promDuration(d), promDuration(step))
		}
	}
	return c, nil
}

func (c *compiled) pageRules() []BurnRule {
	if c.slo.Alerting.Disabled {
		return nil
	}
	if c.slo.Alerting.Page == nil {
		return DefaultPage
	}
	return c.slo.Alerting.Page
}

func (c *compiled) ticketRules() []BurnRule {
	if c.slo.Alerting.Disabled {
		return nil
	}
	if c.slo.Alerting.Ticket == nil {
		return DefaultTicket
	}
	return c.slo.Alerting.Ticket
}

// breakdown returns the PromQL of bad events per second over rng summed by
// the SLO's groups plus by.
func (c *compiled) breakdown(by []string, rng time.Duration) string {
	labels := append(append([]string{}, c.slo.GroupBy...), by...)
	w := promDuration(rng)
	sum := func(e string) string {
		return byClause(labels) + "(" + strings.ReplaceAll(e, WindowPlaceholder, w) + ")"
	}
	if c.raw.bad != "" {
		return sum(c.raw.bad) + " > 0"
	}
	return "(" + sum(c.raw.total) + " - (" + sum(c.raw.good) + " or " + sum(c.raw.total) + " * 0)) > 0"
}

// sliExpr describes the SLI for evidence.
func (c *compiled) sliExpr() string {
	if c.raw.bad != "" {
		return "1 - (" + c.raw.bad + ") / (" + c.raw.total + ")"
	}
	return "(" + c.raw.good + ") / (" + c.raw.total + ")"
}
