package broker

import (
	"sort"
	"sync"
	"sync/atomic"
)

// otherLabel is the label value that stands for every value not in a
// bounded label's top N.
const otherLabel = "other"

// boundedLabels bounds the values of a label that clients choose (client
// ids, client software, topic names): the N most active values keep their
// own series and the rest are folded into "other", so a fleet of 10,000
// clients costs N+1 series per metric, not 10,000.
//
// Activity is counted per value: for values with their own series by an
// atomic add on the value's slot (the hot path takes no lock); for the
// rest in a table of candidates bounded at 4N with the Space-Saving
// algorithm (a new value replaces the least active candidate and inherits
// its count, so a value that keeps coming back rises even if the table is
// full). Every window (a minute on brokers) rank re-ranks: counts are
// halved so rank follows recent activity, the top N take the series, and
// values that lost theirs, or that saw no activity for idleWindows, are
// evicted: onEvict deletes their series.
//
// Until N values have series a new value gets one at once, so a small
// deployment sees every client from its first request.
type boundedLabels struct {
	limit       int
	idleWindows int
	onEvict     func(value string)

	mu         sync.Mutex
	candidates map[string]*labelSlot // includes the admitted ones
	admitted   atomic.Pointer[map[string]*labelSlot]
	gen        atomic.Uint64 // bumped when a value loses its series
}

// labelSlot is one tracked value's activity.
type labelSlot struct {
	value   string
	count   atomic.Uint64
	base    uint64      // count after the last ranking; under mu
	idle    int         // windows without activity; under mu
	evicted atomic.Bool // dropped from the candidates: resolve again
}

func newBoundedLabels(limit, idleWindows int, onEvict func(string)) *boundedLabels {
	l := &boundedLabels{limit: limit, idleWindows: idleWindows, onEvict: onEvict, candidates: map[string]*labelSlot{}}
	l.admitted.Store(&map[string]*labelSlot{})
	return l
}

// boundLabel is a caller's cached resolution of one value: the label to
// use and the slot to count activity on. A caller keeps it while its
// value stays the same and valid says yes.
type boundLabel struct {
	label string
	slot  *labelSlot
	gen   uint64
}

// valid reports whether the resolution still holds.
func (l *boundedLabels) valid(b *boundLabel) bool {
	return b.slot != nil && b.gen == l.gen.Load() && !b.slot.evicted.Load()
}

// resolve returns the label for value and the slot its activity goes to.
func (l *boundedLabels) resolve(value string) boundLabel {
	gen := l.gen.Load()
	if s, ok := (*l.admitted.Load())[value]; ok {
		return boundLabel{label: value, slot: s, gen: gen}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	adm := *l.admitted.Load()
	if s, ok := adm[value]; ok {
		return boundLabel{label: value, slot: s, gen: gen}
	}
	s := l.candidates[value]
	if s == nil {
		s = l.addCandidate(value)
	}
	if len(adm) < l.limit {
		next := make(map[string]*labelSlot, len(adm)+1)
		for k, v := range adm {
			next[k] = v
		}
		next[value] = s
		l.admitted.Store(&next)
		return boundLabel{label: value, slot: s, gen: gen}
	}
	return boundLabel{label: otherLabel, slot: s, gen: gen}
}

// addCandidate tracks a new value, replacing the least active candidate
// without a series when the table is full. Called with mu held.
func (l *boundedLabels) addCandidate(value string) *labelSlot {
	s := &labelSlot{value: value}
	if len(l.candidates) >= 4*max(l.limit, 1) {
		adm := *l.admitted.Load()
		var victim *labelSlot
		for _, c := range l.candidates {
			if _, ok := adm[c.value]; ok {
				continue
			}
			if victim == nil || c.count.Load() < victim.count.Load() {
				victim = c
			}
		}
		if victim != nil {
			delete(l.candidates, victim.value)
			victim.evicted.Store(true)
			s.count.Store(victim.count.Load())
		}
	}
	l.candidates[value] = s
	return s
}

// rank ends a window: the most active values take the series.
func (l *boundedLabels) rank() {
	type ranked struct {
		s      *labelSlot
		count  uint64
		holder bool
	}
	l.mu.Lock()
	adm := *l.admitted.Load()
	all := make([]ranked, 0, len(l.candidates))
	for _, s := range l.candidates {
		c := s.count.Load()
		if c > s.base {
			s.idle = 0
		} else {
			s.idle++
		}
		// Halve, keeping what arrives meanwhile.
		h := c / 2
		if h > 0 {
			s.count.Add(^(h - 1))
		}
		s.base = c - h
		_, holder := adm[s.value]
		all = append(all, ranked{s: s, count: c, holder: holder})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].count != all[j].count {
			return all[i].count > all[j].count
		}
		// Ties keep the current holders, then go by name: stable.
		if all[i].holder != all[j].holder {
			return all[i].holder
		}
		return all[i].s.value < all[j].s.value
	})
	next := make(map[string]*labelSlot, l.limit)
	var evicted []string
	for _, r := range all {
		idle := r.s.idle >= l.idleWindows
		if idle {
			delete(l.candidates, r.s.value)
			r.s.evicted.Store(true)
		}
		if len(next) < l.limit && !idle {
			next[r.s.value] = r.s
			continue
		}
		if r.holder {
			evicted = append(evicted, r.s.value)
		}
	}
	l.admitted.Store(&next)
	if len(evicted) > 0 {
		l.gen.Add(1)
	}
	l.mu.Unlock()
	for _, v := range evicted {
		l.onEvict(v)
	}
}

// admittedValues returns the values that have their own series.
func (l *boundedLabels) admittedValues() []string {
	adm := *l.admitted.Load()
	out := make([]string, 0, len(adm))
	for v := range adm {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}
