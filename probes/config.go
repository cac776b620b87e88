package probes

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Defaults and limits of Config.
const (
	DefaultInterval       = time.Second
	MinInterval           = 100 * time.Millisecond
	DefaultTimeout        = 5 * time.Second
	DefaultLossDeadline   = 20 * time.Second
	DefaultLayoutInterval = 5 * time.Second
	DefaultCell           = "default"
	// TopicPrefix starts the name of every probe topic: TopicPrefix + cell.
	TopicPrefix = "__vigil_probe_"
)

// Config configures a Prober. Zero values mean the defaults.
type Config struct {
	// Bootstrap are the seed brokers, host:port. Required.
	Bootstrap []string
	// Location names the probe's vantage point: the location label of its
	// metrics. Probes in several places are several vantage points; their
	// locations tell "the broker is unreachable" from "this probe's network
	// is bad". Required.
	Location string
	// Cluster is the cluster label; empty: the cluster id the brokers
	// report.
	Cluster string
	// Cell is the cell of every broker CellOf does not place, and of every
	// broker when CellOf is nil (DefaultCell when empty).
	Cell string
	// CellOf returns the cell of a broker, or "" for Cell. The Kafka
	// protocol carries no cell, so this is how a probe learns them; see
	// CellFromRack for Vigil's rack naming.
	CellOf func(BrokerInfo) string
	// Interval is the time between two probes of a broker (DefaultInterval;
	// at least MinInterval).
	Interval time.Duration
	// Timeout bounds every operation: a produce, a metadata request, a
	// commit, a connection, an admin request (DefaultTimeout).
	Timeout time.Duration
	// LossDeadline is how long after its acknowledgement a probe record
	// must have been consumed before it counts as lost
	// (DefaultLossDeadline).
	LossDeadline time.Duration
	// LayoutInterval is the least time between two changes the probe makes
	// to a probe topic (creating partitions, reassignments, elections), so
	// that it never hammers a cluster that does not follow
	// (DefaultLayoutInterval).
	LayoutInterval time.Duration
	// Registerer receives the probe's metrics, labelled location=Location;
	// nil keeps them in a registry of their own, unexposed.
	Registerer prometheus.Registerer
	// Logger logs layout changes and errors; nil discards.
	Logger *slog.Logger
	// ClientOpts are extra franz-go options for every client the probe
	// makes (TLS, SASL, hooks).
	ClientOpts []kgo.Opt
}

// CellFromRack returns the cell of a broker whose rack is named like
// `vigil dev` names them, the cell followed by a number (racks a0, a1, a2
// are in cell a), or "" for a broker without a rack.
func CellFromRack(b BrokerInfo) string { return strings.TrimRight(b.Rack, "0123456789") }

// TopicName returns the probe topic of a cell.
func TopicName(cell string) string { return TopicPrefix + cell }

// groupName returns the consumer group whose commits probe a cell.
func groupName(location, cell string) string { return "__vigil_probe." + location + "." + cell }

// validName reports whether s can go into a topic name.
func validName(s string) bool {
	if s == "" || len(TopicPrefix)+len(s) > 249 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// withDefaults checks c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	c.Interval = cmp.Or(c.Interval, DefaultInterval)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.LossDeadline = cmp.Or(c.LossDeadline, DefaultLossDeadline)
	c.LayoutInterval = cmp.Or(c.LayoutInterval, DefaultLayoutInterval)
	c.Cell = cmp.Or(c.Cell, DefaultCell)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	var errs []error
	if len(c.Bootstrap) == 0 {
		errs = append(errs, errors.New("no bootstrap brokers: give at least one host:port"))
	}
	if c.Location == "" {
		errs = append(errs, errors.New("no location: name the probe's vantage point (a data centre, a zone, a host)"))
	}
	if !validName(c.Cell) {
		errs = append(errs, fmt.Errorf("cell %q: use letters, digits, '.', '_' and '-' only", c.Cell))
	}
	if c.Interval < MinInterval {
		errs = append(errs, fmt.Errorf("interval %v is below the minimum %v", c.Interval, MinInterval))
	}
	if c.Timeout < 0 || c.LossDeadline < 0 || c.LayoutInterval < 0 {
		errs = append(errs, errors.New("timeout, loss deadline and layout interval must be positive"))
	}
	return c, errors.Join(errs...)
}

// maxInFlight is how many probe records may be in flight to one broker:
// enough that a broker answering within the timeout never makes the probe
// skip an interval, at most 64.
func (c Config) maxInFlight() int {
	return min(64, int((c.Timeout+c.Interval-1)/c.Interval)+1)
}

// maxPending bounds the records a partition's tracker follows: those sent
// within the loss deadline and the timeout, twice over.
func (c Config) maxPending() int {
	return 2*int((c.LossDeadline+c.Timeout)/c.Interval) + c.maxInFlight() + 16
}
