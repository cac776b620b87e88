package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilhq/vigil/mitigator"
	"github.com/vigilhq/vigil/slo"
)

const mitigationsUsage = `usage: vigil mitigations list [--open] [--limit N]
       vigil mitigations show ID
       vigil mitigations approve ID
       vigil mitigations undo ID
       vigil mitigations mode [off|dry-run|approve|auto]

list     the mitigator's decisions, newest first, and any suppression
show     one decision with its evidence, policy verdict, steps and results
approve  carry out a decision pending approval (mode approve)
undo     undo a decision: undemote, unfence, cancel a pending one
mode     print the mode, or set it (off is the kill switch)

flags (before or after the words):
  --url URL   the HTTP API of vigil dev or vigil observer (default $VIGIL_URL,
              else http://127.0.0.1:8080)
  --json      print the API's JSON
  --timeout D give up after D (default 1m; approve and undo wait for the action)
`

// runMitigations runs `vigil mitigations ...` against the HTTP API.
func runMitigations(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mitigations", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, mitigationsUsage) }
	def := os.Getenv("VIGIL_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	url := fs.String("url", def, "HTTP API of vigil dev or vigil observer")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	open := fs.Bool("open", false, "list: open mitigations only")
	limit := fs.Int("limit", 50, "list: at most this many decisions")
	// Flags may come before or after the words.
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		words = append(words, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(words) == 0 {
		fmt.Fprint(stderr, mitigationsUsage)
		return errors.New("vigil mitigations: missing subcommand")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := &apiClient{base: strings.TrimSuffix(*url, "/")}
	verb, rest := words[0], words[1:]
	oneID := func() (string, error) {
		if len(rest) != 1 {
			return "", fmt.Errorf("vigil mitigations %s: give one decision id (see vigil mitigations list)", verb)
		}
		return rest[0], nil
	}
	printDecision := func(raw json.RawMessage) error {
		if *asJSON {
			return printJSON(stdout, raw)
		}
		var d mitigator.Decision
		if err := json.Unmarshal(raw, &d); err != nil {
			return err
		}
		writeDecision(stdout, &d)
		return nil
	}
	switch verb {
	case "list":
		if len(rest) > 0 {
			return fmt.Errorf("vigil mitigations list: unexpected arguments %v", rest)
		}
		if *limit <= 0 {
			return errors.New("--limit: want a positive number")
		}
		raw, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/mitigations?limit=%d&open=%t", *limit, *open), nil)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, raw)
		}
		var l struct {
			Mode        string               `json:"mode"`
			Total       int                  `json:"total"`
			Mitigations []mitigator.Decision `json:"mitigations"`
			Suppressed  []struct {
				Description string `json:"description"`
			} `json:"suppressed"`
		}
		if err := json.Unmarshal(raw, &l); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "mode: %s; %d decisions in all\n", l.Mode, l.Total)
		for _, s := range l.Suppressed {
			fmt.Fprintf(stdout, "SUPPRESSED: %s\n", s.Description)
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tAT\tACTION\tBROKER\tCELL\tOUTCOME\tOPEN\tREASON")
		for _, d := range l.Mitigations {
			b := fmt.Sprint(d.Broker)
			if d.Broker < 0 {
				b = "-"
			}
			reason := d.Reason
			if d.Outcome == mitigator.OutRefused {
				reason = d.Policy
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%t\t%s\n", d.ID, d.At.Local().Format("2006-01-02 15:04:05"), d.Action, b, d.Cell, d.Outcome, d.Open, reason)
		}
		return w.Flush()
	case "show", "approve", "undo":
		id, err := oneID()
		if err != nil {
			return err
		}
		method, path := http.MethodGet, "/api/v1/mitigations/"+id
		if verb != "show" {
			method, path = http.MethodPost, path+"/"+verb
		}
		raw, err := c.do(ctx, method, path, nil)
		if err != nil {
			return err
		}
		return printDecision(raw)
	case "mode":
		var raw json.RawMessage
		var err error
		switch len(rest) {
		case 0:
			raw, err = c.do(ctx, http.MethodGet, "/api/v1/mitigator/mode", nil)
		case 1:
			if !mitigator.ValidMode(rest[0]) {
				return fmt.Errorf("vigil mitigations mode %s: want one of off (the kill switch), dry-run, approve, auto", rest[0])
			}
			raw, err = c.do(ctx, http.MethodPut, "/api/v1/mitigator/mode", map[string]string{"mode": rest[0]})
		default:
			return errors.New("vigil mitigations mode: give at most one mode")
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, raw)
		}
		var m struct {
			Mode string `json:"mode"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		fmt.Fprintln(stdout, m.Mode)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, mitigationsUsage)
		return nil
	default:
		fmt.Fprint(stderr, mitigationsUsage)
		return fmt.Errorf("vigil mitigations: unknown subcommand %q", verb)
	}
}

// writeDecision prints one decision for a person.
func writeDecision(w io.Writer, d *mitigator.Decision) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("id", d.ID)
	row("at", d.At.Local().Format(time.RFC3339))
	row("updated", d.Updated.Local().Format(time.RFC3339))
	row("action", d.Action)
	if d.Broker >= 0 {
		row("broker", fmt.Sprint(d.Broker))
	}
	row("cell", d.Cell)
	row("detector", d.Detector)
	row("reason", d.Reason)
	row("mode", d.Mode)
	row("outcome", d.Outcome)
	row("open", fmt.Sprint(d.Open))
	row("policy", d.Policy)
	row("phase", d.Phase)
	if d.NewBroker != 0 {
		row("new broker", fmt.Sprint(d.NewBroker))
	}
	row("undo of", d.UndoOf)
	row("undone by", d.UndoneBy)
	row("note", d.UndoNote)
	if d.ApprovedAt != nil {
		row("approved at", d.ApprovedAt.Local().Format(time.RFC3339))
	}
	row("error", d.Error)
	_ = tw.Flush()
	if len(d.Steps) > 0 {
		fmt.Fprintln(w, "steps:")
		for _, s := range d.Steps {
			target := fmt.Sprintf("broker %d", s.Broker)
			if s.Topic != "" {
				target += fmt.Sprintf(" %s/%d", s.Topic, s.Partition)
			}
			line := fmt.Sprintf("  %-16s %-22s %s", s.Op, target, s.Result)
			if s.Detail != "" {
				line += ": " + s.Detail
			}
			fmt.Fprintln(w, line)
		}
	}
	if len(d.Evidence) > 0 {
		fmt.Fprintln(w, "evidence:")
		for _, s := range d.Evidence {
			fmt.Fprintf(w, "  %s (%s %s) since %s\n", s.ID, s.Source, s.Rule, s.Since.Local().Format(time.RFC3339))
			for _, e := range s.Evidence {
				fmt.Fprintf(w, "    %v = %s\n", e.Value, strings.Join(strings.Fields(e.Expr), " "))
			}
		}
	}
}

func printJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// apiClient calls the JSON API of vigil dev or vigil observer, whose
// answers are {"status":"success","data":...} or {"status":"error","error":"..."}.
type apiClient struct{ base string }

func (c *apiClient) do(ctx context.Context, method, path string, body any) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling %s (is vigil dev or vigil observer running there? set --url): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	var ans struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(data, &ans); err != nil {
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%s%s: 404: does this server run the mitigator?", c.base, path)
		}
		return nil, fmt.Errorf("%s%s: %s: %.200s", c.base, path, resp.Status, data)
	}
	if ans.Status != "success" {
		return nil, fmt.Errorf("%s", ans.Error)
	}
	return ans.Data, nil
}

// startMitigator starts a mitigator on the controller API (ctrl) and,
// when prov is not nil, a Provisioner: it reloads the audit trail in
// dataDir, mounts the API on mux, registers the metrics on reg (if not
// nil) and consumes src until ctx ends. `vigil observer` runs it without a
// Provisioner; `vigil dev` needs only this one call.
func startMitigator(ctx context.Context, logger *slog.Logger, mux *http.ServeMux, dataDir, mode string,
	ctrl mitigator.Controller, prov mitigator.Provisioner, src slo.SignalSource, reg prometheus.Registerer, tune func(*mitigator.Config)) (*mitigator.Mitigator, error) {
	cfg := mitigator.Config{Mode: mode, DataDir: dataDir, Logger: logger.With("component", "mitigator"), Registerer: reg}
	if tune != nil {
		tune(&cfg)
	}
	m, err := mitigator.New(cfg, ctrl, prov)
	if err != nil {
		return nil, err
	}
	m.Mount(mux)
	go func() {
		_ = m.Run(ctx, src)
		m.Close()
	}()
	return m, nil
}
