package slo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// ObserverConfig assembles the engine in either mode.
type ObserverConfig struct {
	// DataDir holds the TSDB: the scraped metrics and the recorded series
	// (embedded mode), or only the recorded series (remote mode).
	DataDir string
	TSDB    TSDBOptions
	// RemoteURL, if set, selects remote mode: the SLIs and health rules
	// are evaluated by the Prometheus-compatible API at this URL and
	// nothing is scraped.
	RemoteURL    string
	RemoteHeader http.Header
	// Targets are scraped every ScrapeInterval in embedded mode.
	Targets        []Target
	ScrapeInterval time.Duration
	// Spec is evaluated every EvalInterval (default: the step).
	Spec         *Spec
	Step         time.Duration
	EvalInterval time.Duration
	Delay        time.Duration
	Backfill     time.Duration
	// RecordWindows and RecordStepRates are Config's: the recorded burn
	// rates (default 1h) and step rates (default off).
	RecordWindows   []time.Duration
	RecordStepRates bool
	// ReportSchedule (cron syntax) writes reports into ReportDir.
	ReportSchedule string
	ReportDir      string
	Logger         *slog.Logger
}

// Observer is a running engine with its TSDB and, in embedded mode, its
// scraper.
type Observer struct {
	Engine  *Engine
	Scraper *Scraper // nil in remote mode
	DB      *TSDB
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// StartObserver opens the TSDB, starts scraping (embedded mode) and
// evaluating until ctx ends or Close.
func StartObserver(ctx context.Context, cfg ObserverConfig) (*Observer, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("slo: ObserverConfig.DataDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TSDB.Logger == nil {
		cfg.TSDB.Logger = cfg.Logger
	}
	db, err := OpenTSDB(cfg.DataDir, cfg.TSDB)
	if err != nil {
		return nil, err
	}
	o := &Observer{DB: db}
	var raw Querier
	if cfg.RemoteURL != "" {
		raw = &RemoteQuerier{URL: cfg.RemoteURL, Header: cfg.RemoteHeader, Client: &http.Client{Timeout: 2 * time.Minute}}
	} else {
		raw = &LocalQuerier{Engine: NewPromQLEngine(cfg.Logger), Store: db}
		o.Scraper, err = NewScraper(db, ScrapeConfig{Targets: cfg.Targets, Interval: cfg.ScrapeInterval, Logger: cfg.Logger})
		if err != nil {
			db.Close()
			return nil, err
		}
	}
	o.Engine, err = New(Config{Spec: cfg.Spec, Raw: raw, Store: db, Step: cfg.Step, Delay: cfg.Delay, Backfill: cfg.Backfill, Logger: cfg.Logger,
		RecordWindows: cfg.RecordWindows, RecordStepRates: cfg.RecordStepRates})
	if err != nil {
		db.Close()
		return nil, err
	}
	ctx, o.cancel = context.WithCancel(ctx)
	if cfg.ReportSchedule != "" {
		dir := cfg.ReportDir
		if dir == "" {
			dir = "slo-reports"
		}
		done, err := o.Engine.ScheduleReports(ctx, cfg.ReportSchedule, dir, cfg.Logger)
		if err != nil {
			o.cancel()
			db.Close()
			return nil, err
		}
		// Close waits for a report being written.
		o.wg.Add(1)
		go func() { defer o.wg.Done(); <-done }()
	}
	if o.Scraper != nil {
		o.wg.Add(1)
		go func() { defer o.wg.Done(); o.Scraper.Run(ctx) }()
	}
	o.wg.Add(1)
	go func() { defer o.wg.Done(); o.Engine.Run(ctx, cfg.EvalInterval) }()
	mode := "embedded"
	if cfg.RemoteURL != "" {
		mode = "remote " + cfg.RemoteURL
	}
	cfg.Logger.Info("SLO engine running", "mode", mode, "slos", len(cfg.Spec.SLOs), "health_rules", len(cfg.Spec.HealthRules),
		"targets", len(cfg.Targets), "step", o.Engine.Step())
	return o, nil
}

// Handler serves the engine's API, /api/v1/report and, in embedded mode,
// /api/v1/targets.
func (o *Observer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/v1/slos", o.Engine.Handler())
	mux.Handle("/api/v1/slos/", o.Engine.Handler())
	mux.Handle("/api/v1/signals", o.Engine.Handler())
	mux.HandleFunc("GET /api/v1/report", func(w http.ResponseWriter, r *http.Request) {
		rep := o.Engine.Report()
		if r.URL.Query().Get("format") == "md" {
			w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
			_ = rep.WriteMarkdown(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = rep.WriteJSON(w)
	})
	mux.HandleFunc("GET /api/v1/targets", func(w http.ResponseWriter, r *http.Request) {
		if o.Scraper == nil {
			writeJSON(w, http.StatusOK, []TargetHealth{})
			return
		}
		writeJSON(w, http.StatusOK, o.Scraper.Targets())
	})
	return mux
}

// Close stops scraping and evaluation and closes the TSDB.
func (o *Observer) Close() error {
	o.cancel()
	o.wg.Wait()
	if err := o.DB.Close(); err != nil {
		return fmt.Errorf("closing the SLO engine's TSDB: %w", err)
	}
	return nil
}
