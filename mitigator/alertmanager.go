package mitigator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil/slo"
)

// AlertmanagerWebhook is the JSON body Alertmanager posts to a webhook
// receiver (version 4).
type AlertmanagerWebhook struct {
	Version           string              `json:"version"`
	GroupKey          string              `json:"groupKey"`
	TruncatedAlerts   int                 `json:"truncatedAlerts"`
	Status            string              `json:"status"`
	Receiver          string              `json:"receiver"`
	GroupLabels       map[string]string   `json:"groupLabels"`
	CommonLabels      map[string]string   `json:"commonLabels"`
	CommonAnnotations map[string]string   `json:"commonAnnotations"`
	ExternalURL       string              `json:"externalURL"`
	Alerts            []AlertmanagerAlert `json:"alerts"`
}

// AlertmanagerAlert is one alert of a webhook.
type AlertmanagerAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// ParseAlertmanagerWebhook decodes and checks a webhook body.
func ParseAlertmanagerWebhook(r io.Reader) (*AlertmanagerWebhook, error) {
	dec := json.NewDecoder(io.LimitReader(r, 8<<20))
	var w AlertmanagerWebhook
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("not an Alertmanager webhook body (JSON, version 4): %v", err)
	}
	if w.Version != "4" {
		return nil, fmt.Errorf("webhook version %q: only version 4 (Alertmanager 0.x webhook_configs) is understood", w.Version)
	}
	for i, a := range w.Alerts {
		if a.Status != "firing" && a.Status != "resolved" {
			return nil, fmt.Errorf("alerts[%d].status %q: want firing or resolved", i, a.Status)
		}
		if a.Labels["alertname"] == "" && a.Labels["signal"] == "" {
			return nil, fmt.Errorf("alerts[%d] has neither a signal nor an alertname label", i)
		}
	}
	return &w, nil
}

// AlertSignal turns an alert into a signal: its name is the alert's
// `signal` label (as the alert rules Vigil generates set it), else its
// alertname; its labels (broker, cell, cluster ...) are the alert's.
func AlertSignal(a AlertmanagerAlert, now time.Time) slo.Signal {
	name := a.Labels["signal"]
	if name == "" {
		name = a.Labels["alertname"]
	}
	l := map[string]string{}
	for k, v := range a.Labels {
		l[k] = v
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var id strings.Builder
	id.WriteString(name + "{")
	for i, k := range keys {
		if i > 0 {
			id.WriteString(",")
		}
		fmt.Fprintf(&id, "%s=%q", k, l[k])
	}
	id.WriteString("}")
	since := a.StartsAt
	if since.IsZero() {
		since = now
	}
	return slo.Signal{ID: id.String(), Name: name, Source: "alertmanager", Rule: a.Labels["alertname"], Severity: a.Labels["severity"],
		Description: firstNonEmpty(a.Annotations["description"], a.Annotations["summary"]), Labels: l, Since: since, At: now,
		Evidence: []slo.Evidence{{Expr: a.GeneratorURL, Value: 1, Labels: l, At: now, Note: "Alertmanager alert " + a.Fingerprint + " firing since " + since.UTC().Format(time.RFC3339)}}}
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// AlertmanagerReceiver keeps the alerts Alertmanager reports as active
// signals: a firing alert is active until it is resolved, or until ttl
// passes without Alertmanager sending it again. It implements
// slo.SignalSource.
type AlertmanagerReceiver struct {
	ttl   time.Duration
	clock func() time.Time
	mu    sync.Mutex
	// active by alert identity (fingerprint, or the signal id).
	active  map[string]amEntry
	updates slo.Fanout
}

type amEntry struct {
	sig  slo.Signal
	seen time.Time
}

var _ slo.SignalSource = (*AlertmanagerReceiver)(nil)

// NewAlertmanagerReceiver returns a receiver whose alerts expire after
// ttl without news (15m when 0).
func NewAlertmanagerReceiver(ttl time.Duration, clock func() time.Time) *AlertmanagerReceiver {
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	if clock == nil {
		clock = time.Now
	}
	return &AlertmanagerReceiver{ttl: ttl, clock: clock, active: map[string]amEntry{}}
}

// Receive applies a webhook and returns how many alerts fire and resolve.
func (r *AlertmanagerReceiver) Receive(w *AlertmanagerWebhook) (firing, resolved int, err error) {
	if w == nil {
		return 0, 0, errors.New("no webhook")
	}
	now := r.clock()
	r.mu.Lock()
	for _, a := range w.Alerts {
		s := AlertSignal(a, now)
		key := a.Fingerprint
		if key == "" {
			key = s.ID
		}
		if a.Status == "resolved" {
			delete(r.active, key)
			resolved++
			continue
		}
		r.active[key] = amEntry{sig: s, seen: now}
		firing++
	}
	r.updates.Publish(slo.Update{At: now, Signals: r.signalsLocked(now)})
	r.mu.Unlock()
	return firing, resolved, nil
}

func (r *AlertmanagerReceiver) signalsLocked(now time.Time) []slo.Signal {
	out := make([]slo.Signal, 0, len(r.active))
	for k, e := range r.active {
		if now.Sub(e.seen) > r.ttl {
			delete(r.active, k)
			continue
		}
		s := e.sig
		s.At = now
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Signals implements slo.SignalSource: the firing alerts.
func (r *AlertmanagerReceiver) Signals() []slo.Signal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.signalsLocked(r.clock())
}

// Subscribe implements slo.SignalSource: an Update after every webhook.
func (r *AlertmanagerReceiver) Subscribe(buffer int) (<-chan slo.Update, func()) {
	return r.updates.Subscribe(buffer)
}
