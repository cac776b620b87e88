// Command vigil is the single Vigil binary. It only wires packages together:
//
//	vigil dev      the whole platform in one process with embedded defaults
//	vigil broker   one broker, configured by a YAML file and flags
//	vigil bench    load generator: produce, consume, e2e
//	vigil controller  one member of the metadata quorum
//	vigil admin    operator CLI on the controller API
//	vigil probe    synthetic produce/consume probes of every broker
//	vigil slo      SLO spec checks and reports
//	vigil observer the SLO engine on its own (embedded TSDB or remote Prometheus)
//	vigil mitigations  the mitigator's decisions: list, show, approve, undo, mode
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: vigil <command> [flags]

commands:
  dev      run the whole platform in one process (one broker on 127.0.0.1:9092,
           HTTP on 127.0.0.1:8080, data in ./vigil-data)
  broker   run one broker: vigil broker --config FILE [flags]
  bench    measure a Kafka cluster: vigil bench produce|consume|e2e [flags]
  controller  run one metadata quorum member: vigil controller --id N --peers ... [flags]
  admin    operate the cluster through the controller: vigil admin brokers|demote N|...
  probe    probe every broker of a Kafka cluster: vigil probe --bootstrap HOST:PORT --location NAME [flags]
  slo      SLO specs and reports: vigil slo check FILE... | report | defaults
  observer run the SLO engine on its own: vigil observer --target URL... | --remote URL
           [--controller HOST:PORT --mitigation-mode MODE]
  mitigations  the mitigator's decisions: vigil mitigations list|show ID|approve ID|undo ID|mode [MODE]

Run 'vigil <command> -h' for the flags of a command.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "vigil:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stderr)
	case "broker":
		return runBroker(ctx, args[1:], stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "controller":
		return runController(ctx, args[1:], stderr)
	case "admin":
		return runAdmin(ctx, args[1:], stdout, stderr)
	case "probe":
		return runProbe(ctx, args[1:], stderr)
	case "slo":
		return runSLO(ctx, args[1:], stdout, stderr)
	case "observer":
		return runObserver(ctx, args[1:], stderr)
	case "mitigations":
		return runMitigations(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// parseFlags parses a command's flags, refuses words after them, and
// returns the logger --log-level (logLevel) asks for.
func parseFlags(fs *flag.FlagSet, args []string, logLevel *string, stderr io.Writer) (*slog.Logger, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return newLogger(stderr, *logLevel)
}

// newLogger returns the process logger: text to stderr at the given level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	if level == "" {
		level = "info"
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
