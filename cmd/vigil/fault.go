package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/broker"
)

const faultUsage = `usage: vigil admin [--token T] [--json] fault --broker-api URL <verb> [args]

Inject faults into a broker started with --staging (refused otherwise).
--broker-api is the broker's HTTP endpoint, http://host:port (in vigil dev,
http://127.0.0.1:8080/brokers/<id>); default $VIGIL_BROKER_API.

verbs:
  show                               the faults in force
  clear                              remove every fault
  set FILE|-                         replace the faults with a JSON fault set
  slow-disk write|fsync|all LATENCY  add LATENCY (e.g. 300ms) to log writes and/or fsyncs
  failing-disk write|fsync|all RATE  fail that fraction (0-1) of them with EIO
  stuck-disk [write|fsync|all]       block them until cleared (default all)
  blackhole clients|replication|controller [in|out|both] [--peer-broker N]
                                     traffic vanishes; peers time out (default both)
  drop clients|replication|controller [in|out|both] [--peer-broker N]
                                     connections are reset (default both)

The verbs other than set and clear add to the faults in force.
`

// runFault runs `vigil admin fault`.
func runFault(ctx context.Context, token string, asJSON bool, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fault", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, faultUsage) }
	api := fs.String("broker-api", os.Getenv("VIGIL_BROKER_API"), "the broker's HTTP endpoint")
	peerBroker := fs.Int("peer-broker", -1, "for replication faults: only traffic with this broker")
	fs.BoolVar(&asJSON, "json", asJSON, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Flags may also follow the verb.
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, faultUsage)
		return errors.New("no fault verb given")
	}
	verb := rest[0]
	rest, err := parseInterspersed(fs, rest[1:])
	if err != nil {
		return err
	}
	if *api == "" {
		return errors.New("give the broker's HTTP endpoint with --broker-api http://host:port (or $VIGIL_BROKER_API)")
	}
	c := &broker.FaultClient{URL: *api, Token: token}
	var out broker.Faults
	add := func(build func() (broker.Faults, error)) (broker.Faults, error) {
		extra, err := build()
		if err != nil {
			return broker.Faults{}, err
		}
		cur, err := c.Get(ctx)
		if err != nil {
			return broker.Faults{}, err
		}
		cur.Storage = append(cur.Storage, extra.Storage...)
		cur.Network = append(cur.Network, extra.Network...)
		return c.Set(ctx, cur)
	}
	switch verb {
	case "show":
		out, err = c.Get(ctx)
	case "clear":
		out, err = c.Clear(ctx)
	case "set":
		if len(rest) != 1 {
			return errors.New("set takes a file with a JSON fault set, or - for stdin")
		}
		var data []byte
		if rest[0] == "-" {
			data, err = io.ReadAll(os.Stdin)
		} else {
			data, err = os.ReadFile(rest[0])
		}
		if err != nil {
			return err
		}
		var f broker.Faults
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			return fmt.Errorf("%s: not a JSON fault set: %w", rest[0], err)
		}
		out, err = c.Set(ctx, f)
	case "slow-disk", "failing-disk", "stuck-disk":
		out, err = add(func() (broker.Faults, error) { return diskFault(verb, rest) })
	case "blackhole", "drop":
		out, err = add(func() (broker.Faults, error) { return netFault(verb, rest, *peerBroker) })
	default:
		fmt.Fprint(stderr, faultUsage)
		return fmt.Errorf("unknown fault verb %q", verb)
	}
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printFaults(stdout, out)
	return nil
}

func diskFault(verb string, args []string) (broker.Faults, error) {
	op := "all"
	if len(args) > 0 {
		op = args[0]
	}
	sf := broker.StorageFault{Op: op}
	switch verb {
	case "slow-disk":
		if len(args) != 2 {
			return broker.Faults{}, errors.New("slow-disk takes an operation (write, fsync or all) and a latency such as 300ms")
		}
		d, err := time.ParseDuration(args[1])
		if err != nil {
			return broker.Faults{}, fmt.Errorf("latency %q: give a duration such as 300ms", args[1])
		}
		sf.Latency = broker.Duration(d)
	case "failing-disk":
		if len(args) != 2 {
			return broker.Faults{}, errors.New("failing-disk takes an operation (write, fsync or all) and a rate between 0 and 1")
		}
		r, err := strconv.ParseFloat(args[1], 64)
		if err != nil {
			return broker.Faults{}, fmt.Errorf("rate %q: give a number between 0 and 1", args[1])
		}
		sf.ErrorRate = r
	case "stuck-disk":
		if len(args) > 1 {
			return broker.Faults{}, errors.New("stuck-disk takes at most an operation (write, fsync or all)")
		}
		sf.Stuck = true
	}
	return broker.Faults{Storage: []broker.StorageFault{sf}}, nil
}

func netFault(mode string, args []string, peerBroker int) (broker.Faults, error) {
	if len(args) < 1 || len(args) > 2 {
		return broker.Faults{}, fmt.Errorf("%s takes a peer class (clients, replication or controller) and optionally a direction (in, out, both)", mode)
	}
	nf := broker.NetworkFault{Peer: args[0], Direction: "both", Mode: mode}
	if len(args) == 2 {
		nf.Direction = args[1]
	}
	if peerBroker >= 0 {
		id := int32(peerBroker)
		nf.Broker = &id
	}
	return broker.Faults{Network: []broker.NetworkFault{nf}}, nil
}

func printFaults(w io.Writer, f broker.Faults) {
	if len(f.Storage) == 0 && len(f.Network) == 0 {
		fmt.Fprintln(w, "no faults")
		return
	}
	for _, s := range f.Storage {
		var what []string
		if s.Latency > 0 {
			what = append(what, "+"+time.Duration(s.Latency).String())
		}
		if s.ErrorRate > 0 {
			what = append(what, fmt.Sprintf("%g%% fail", s.ErrorRate*100))
		}
		if s.Stuck {
			what = append(what, "stuck")
		}
		fmt.Fprintf(w, "storage  %-6s %s\n", s.Op, strings.Join(what, ", "))
	}
	for _, n := range f.Network {
		peer := n.Peer
		if n.Broker != nil {
			peer += " with broker " + strconv.Itoa(int(*n.Broker))
		}
		fmt.Fprintf(w, "network  %-9s %-4s %s\n", n.Mode, n.Direction, peer)
	}
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
