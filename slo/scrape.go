package slo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
)

// Target is one /metrics endpoint to scrape.
type Target struct {
	// URL of the endpoint, e.g. http://127.0.0.1:8080/metrics.
	URL string `yaml:"url" json:"url"`
	// Labels are added to every series that does not carry them already
	// (Prometheus' honor_labels: true), and to up and the scrape_*
	// series. job defaults to "vigil", instance to the URL's host.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// MetricRelabel is applied to every scraped series after the target
	// labels, as Prometheus' metric_relabel_configs.
	MetricRelabel []*relabel.Config `yaml:"metric_relabel_configs,omitempty" json:"metric_relabel_configs,omitempty"`
}

// ScrapeConfig configures a Scraper.
type ScrapeConfig struct {
	Targets  []Target
	Interval time.Duration // default 15s
	Timeout  time.Duration // default: the interval
	Client   *http.Client  // default: http.DefaultClient's transport with the timeout
	Logger   *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaxBodyBytes bounds a scrape's body; default 64 MiB.
	MaxBodyBytes int64
}

// Scraper scrapes targets into a storage, as Prometheus does: target
// labels, metric relabelling, up and scrape_duration_seconds, and
// staleness markers for series that disappear (or all series of a target
// that fails), so PromQL stops seeing them at once.
type Scraper struct {
	cfg   ScrapeConfig
	store storage.Appendable
	mu    sync.Mutex
	state map[string]*targetState // by URL
	// changed wakes Run after SetTargets.
	changed chan struct{}
}

type targetState struct {
	lastSeries map[uint64]labels.Labels
	lastErr    error
	lastScrape time.Time
	health     bool
}

// NewScraper returns a scraper appending to store.
func NewScraper(store storage.Appendable, cfg ScrapeConfig) (*Scraper, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	if cfg.Timeout <= 0 || cfg.Timeout > cfg.Interval {
		cfg.Timeout = cfg.Interval
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 20
	}
	if err := validateTargets(cfg.Targets); err != nil {
		return nil, err
	}
	s := &Scraper{cfg: cfg, store: store, state: map[string]*targetState{}, changed: make(chan struct{}, 1)}
	for _, t := range cfg.Targets {
		s.state[t.URL] = &targetState{}
	}
	return s, nil
}

func validateTargets(ts []Target) error {
	seen := map[string]bool{}
	for _, t := range ts {
		if t.URL == "" {
			return errors.New("scrape target without a url")
		}
		if seen[t.URL] {
			return fmt.Errorf("scrape target %s is listed twice", t.URL)
		}
		seen[t.URL] = true
		for _, rc := range t.MetricRelabel {
			if err := rc.Validate(model.UTF8Validation); err != nil {
				return fmt.Errorf("target %s: metric_relabel_configs: %w", t.URL, err)
			}
		}
	}
	return nil
}

// SetTargets replaces the targets while the scraper runs (a process whose
// set of brokers changes, as vigil dev's when the mitigator provisions or
// retires one): targets with a new URL start being scraped at once, those
// gone stop after their scrape in progress, and a target whose URL stays
// is scraped with its new labels and relabelling from its next scrape on.
func (s *Scraper) SetTargets(ts []Target) error {
	if err := validateTargets(ts); err != nil {
		return err
	}
	s.mu.Lock()
	s.cfg.Targets = append([]Target(nil), ts...)
	keep := map[string]bool{}
	for _, t := range ts {
		keep[t.URL] = true
		if s.state[t.URL] == nil {
			s.state[t.URL] = &targetState{}
		}
	}
	for u := range s.state {
		if !keep[u] {
			delete(s.state, u)
		}
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

// target returns the current target with this URL.
func (s *Scraper) target(url string) (Target, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.cfg.Targets {
		if t.URL == url {
			return t, true
		}
	}
	return Target{}, false
}

// Run scrapes every target every interval until ctx ends, one goroutine
// per target so a slow target never delays the others; SetTargets adds
// and removes goroutines.
func (s *Scraper) Run(ctx context.Context) {
	var wg sync.WaitGroup
	running := map[string]bool{}
	var runMu sync.Mutex
	start := func(url string) {
		running[url] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(s.cfg.Interval)
			defer tick.Stop()
			for {
				// Under runMu, so that a target removed and added
				// again is either still seen here or started anew.
				runMu.Lock()
				t, ok := s.target(url)
				if !ok {
					delete(running, url)
				}
				runMu.Unlock()
				if !ok {
					return
				}
				_ = s.ScrapeOnce(ctx, t)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	for {
		s.mu.Lock()
		var urls []string
		for _, t := range s.cfg.Targets {
			urls = append(urls, t.URL)
		}
		s.mu.Unlock()
		runMu.Lock()
		for _, u := range urls {
			if !running[u] {
				start(u)
			}
		}
		runMu.Unlock()
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-s.changed:
		}
	}
}

// TargetHealth is the state of one target for the API.
type TargetHealth struct {
	URL        string    `json:"url"`
	Up         bool      `json:"up"`
	LastScrape time.Time `json:"last_scrape"`
	LastError  string    `json:"last_error,omitempty"`
	Series     int       `json:"series"`
}

// Targets reports every target's last scrape.
func (s *Scraper) Targets() []TargetHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []TargetHealth
	for _, t := range s.cfg.Targets {
		st := s.state[t.URL]
		th := TargetHealth{URL: t.URL, Up: st.health, LastScrape: st.lastScrape, Series: len(st.lastSeries)}
		if st.lastErr != nil {
			th.LastError = st.lastErr.Error()
		}
		out = append(out, th)
	}
	return out
}

// ScrapeOnce scrapes t now and appends what it got.
func (s *Scraper) ScrapeOnce(ctx context.Context, t Target) error {
	start := s.cfg.Now()
	ts := start.UnixMilli()
	body, ctype, err := s.fetch(ctx, t.URL)
	dur := s.cfg.Now().Sub(start)
	tl := targetLabels(t)
	app := s.store.Appender(ctx)
	seen := map[uint64]labels.Labels{}
	n := 0
	if err == nil {
		n, err = s.parse(app, t, tl, body, ctype, ts, seen)
	}
	s.mu.Lock()
	st := s.state[t.URL]
	if st == nil { // removed by SetTargets while scraping
		st = &targetState{}
	}
	prev := st.lastSeries
	s.mu.Unlock()
	if err != nil {
		// Like Prometheus: a failed scrape ends every series of the target.
		seen = map[uint64]labels.Labels{}
		_ = app.Rollback()
		app = s.store.Appender(ctx)
	}
	// Staleness markers for series gone since the last scrape.
	for h, l := range prev {
		if _, ok := seen[h]; !ok {
			if _, aerr := app.Append(0, l, ts, math.Float64frombits(value.StaleNaN)); aerr != nil && !isSkippable(aerr) {
				s.cfg.Logger.Debug("staleness marker", "series", l.String(), "err", aerr)
			}
		}
	}
	up := 0.0
	if err == nil {
		up = 1
	}
	for name, v := range map[string]float64{"up": up, "scrape_duration_seconds": dur.Seconds(), "scrape_samples_scraped": float64(n)} {
		b := labels.NewBuilder(tl)
		b.Set(labels.MetricName, name)
		if _, aerr := app.Append(0, b.Labels(), ts, v); aerr != nil && !isSkippable(aerr) {
			err = errors.Join(err, aerr)
		}
	}
	if cerr := app.Commit(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	s.mu.Lock()
	st.lastSeries, st.lastErr, st.lastScrape, st.health = seen, err, start, up == 1
	s.mu.Unlock()
	if err != nil {
		s.cfg.Logger.Debug("scrape failed", "target", t.URL, "err", err)
	}
	return err
}

func (s *Scraper) fetch(ctx context.Context, url string) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	// The text format: classic histograms, which PromQL's le buckets need.
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("%s: HTTP %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, "", err
	}
	if int64(len(b)) > s.cfg.MaxBodyBytes {
		return nil, "", fmt.Errorf("%s: body larger than %d bytes", url, s.cfg.MaxBodyBytes)
	}
	return b, resp.Header.Get("Content-Type"), nil
}

func (s *Scraper) parse(app storage.Appender, t Target, tl labels.Labels, body []byte, ctype string, ts int64, seen map[uint64]labels.Labels) (int, error) {
	p, err := textparse.New(body, ctype, labels.NewSymbolTable(), textparse.ParserOptions{FallbackContentType: "text/plain"})
	if p == nil {
		return 0, fmt.Errorf("%s: cannot parse content type %q: %v", t.URL, ctype, err)
	}
	n := 0
	var lset labels.Labels
	b := labels.NewBuilder(labels.EmptyLabels())
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("%s: %w", t.URL, err)
		}
		if e != textparse.EntrySeries {
			continue
		}
		_, tp, v := p.Series()
		p.Labels(&lset)
		b.Reset(lset)
		tl.Range(func(l labels.Label) {
			if b.Get(l.Name) == "" {
				b.Set(l.Name, l.Value)
			}
		})
		if len(t.MetricRelabel) > 0 && !relabel.ProcessBuilder(b, t.MetricRelabel...) {
			continue
		}
		out := b.Labels()
		at := ts
		if tp != nil {
			at = *tp
		}
		n++
		h := out.Hash()
		if _, dup := seen[h]; dup {
			continue
		}
		seen[h] = out
		if _, err := app.Append(0, out, at, v); err != nil && !isSkippable(err) {
			return n, err
		}
	}
	return n, nil
}

// isSkippable: samples Prometheus would drop and count rather than fail
// the scrape for.
func isSkippable(err error) bool {
	return errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrDuplicateSampleForTimestamp) ||
		errors.Is(err, storage.ErrOutOfBounds) || errors.Is(err, storage.ErrTooOldSample)
}

func targetLabels(t Target) labels.Labels {
	m := map[string]string{"job": "vigil", "instance": hostOf(t.URL)}
	for k, v := range t.Labels {
		m[k] = v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := labels.NewScratchBuilder(len(m))
	for _, k := range keys {
		b.Add(k, m[k])
	}
	return b.Labels()
}

func hostOf(u string) string {
	s := u
	for _, pre := range []string{"http://", "https://"} {
		if len(s) > len(pre) && s[:len(pre)] == pre {
			s = s[len(pre):]
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i]
		}
	}
	return s
}
