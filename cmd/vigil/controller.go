package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigilhq/vigil/broker"
	"github.com/vigilhq/vigil/controller"
)

// Default addresses of a controller on this machine.
const (
	defaultControllerAPI  = "127.0.0.1:8090"
	defaultControllerRaft = "127.0.0.1:8091"
)

// runController runs `vigil controller`: one member of the metadata quorum.
func runController(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.Int("id", 1, "this controller's id in the quorum")
	dataDir := fs.String("data-dir", "vigil-controller", "directory for the Raft log, stable store and snapshots")
	listen := fs.String("listen", defaultControllerAPI, "HTTP API address (brokers, vigil admin, the mitigator)")
	raftListen := fs.String("raft-listen", defaultControllerRaft, "Raft transport address")
	raftAdvertise := fs.String("raft-advertise", "", "Raft address peers dial (default: this id's entry in --peers, else --raft-listen)")
	peers := fs.String("peers", "", "every voter as id=host:port of its Raft address, this one included (1=h1:8091,2=h2:8091,3=h3:8091); empty: a single-node quorum")
	token := fs.String("admin-token", os.Getenv("VIGIL_ADMIN_TOKEN"), "require Authorization: Bearer <token> on every API call (default $VIGIL_ADMIN_TOKEN)")
	session := fs.Duration("session-timeout", controller.DefaultSessionTimeout, "broker.session.timeout.ms: fence a broker after this long without heartbeats")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logger, err := parseFlags(fs, args, logLevel, stderr)
	if err != nil {
		return err
	}
	pm, err := controller.ParsePeers(*peers)
	if err != nil {
		return fmt.Errorf("--peers: %w", err)
	}
	if n := len(pm); n == 2 || n == 4 {
		logger.Warn("an even number of controllers tolerates no more failures than one fewer; use 3 or 5", "voters", n)
	}
	srv, err := controller.NewServer(controller.ServerConfig{
		ID: strconv.Itoa(*id), DataDir: *dataDir, Listen: *listen, RaftListen: *raftListen,
		RaftAdvertise: *raftAdvertise, Peers: pm, AdminToken: *token, SessionTimeout: *session,
		RaftLogOutput: stderr, ValidateTopicConfig: broker.ValidateTopicConfig,
	}, logger)
	if err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("signal received; shutting down")
	return srv.Close()
}

const adminUsage = `usage: vigil admin [--controller host:port,...] [--token T] [--json] <verb> [args]

verbs:
  brokers                          list brokers: state, cell, rack, leaders, flags, heartbeat age
  describe-broker N                one broker
  demote N | undemote N            move leaderships off broker N and keep them off / allow again
  fence N | unfence N              fence broker N until unfenced / clear an operator's fence
  decommission N [--to M]          move broker N's replicas away (all to broker M with --to); it is decommissioned when done
  unregister N                     forget broker N (it must hold no replicas)
  topics [TOPIC...]                topics with their partitions, leaders and ISRs
  create-topic NAME --partitions P --replication-factor R [--cell C] [--config k=v]... [--validate-only]
  delete-topic NAME...
  elect-leaders [--preferred|--unclean] [TOPIC[:PARTITION]...]
                                   all partitions that need it when none are named
  remove-from-isr TOPIC:PARTITION BROKER
  reassign TOPIC:PARTITION=B1,B2,... ...   set target replicas
  reassign --cancel TOPIC:PARTITION ...    cancel reassignments
  reassign --list                          list reassignments in progress
  quorum                           controller quorum: leader, voters, applied index
  fault --broker-api URL VERB ...  inject faults into a --staging broker (vigil admin fault -h)

--controller defaults to $VIGIL_CONTROLLER, else ` + defaultControllerAPI + `; --token to $VIGIL_ADMIN_TOKEN.
`

// runAdmin runs `vigil admin`: the operator's CLI on the controller API.
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage) }
	def := os.Getenv("VIGIL_CONTROLLER")
	if def == "" {
		def = defaultControllerAPI
	}
	addrs := fs.String("controller", def, "controller API addresses, comma-separated")
	token := fs.String("token", os.Getenv("VIGIL_ADMIN_TOKEN"), "admin token")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, adminUsage)
		return errors.New("no admin verb given")
	}
	if fs.Arg(0) == "fault" {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		return runFault(ctx, *token, *asJSON, fs.Args()[1:], stdout, stderr)
	}
	c, err := controller.NewClient(controller.ClientConfig{Addrs: []string{*addrs}, Token: *token, RetryTimeout: *timeout})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	a := &admin{c: c, out: stdout, json: *asJSON}
	verb, rest := fs.Arg(0), fs.Args()[1:]
	// Verb flags (and a trailing --json).
	vfs := flag.NewFlagSet(verb, flag.ContinueOnError)
	vfs.SetOutput(stderr)
	vfs.BoolVar(&a.json, "json", a.json, "print JSON")
	return a.run(ctx, verb, vfs, rest)
}

type admin struct {
	c    *controller.Client
	out  io.Writer
	json bool
}

// print writes v as JSON with --json, else calls text.
func (a *admin) print(v any, text func(w *tabwriter.Writer)) error {
	if a.json {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	text(w)
	return w.Flush()
}

func brokerArg(args []string) (int32, error) {
	if len(args) != 1 {
		return 0, errors.New("give one broker id")
	}
	n, err := strconv.ParseInt(args[0], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("broker id %q is not a number", args[0])
	}
	return int32(n), nil
}

// parseTP parses TOPIC:PARTITION (partition -1 when absent and allowed).
func parseTP(s string, partitionOptional bool) (string, int32, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		if partitionOptional {
			return s, -1, nil
		}
		return "", 0, fmt.Errorf("%q: want TOPIC:PARTITION", s)
	}
	p, err := strconv.ParseInt(s[i+1:], 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("%q: partition %q is not a number", s, s[i+1:])
	}
	return s[:i], int32(p), nil
}

func ids(s []int32) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = strconv.Itoa(int(v))
	}
	return strings.Join(parts, ",")
}

func (a *admin) run(ctx context.Context, verb string, fs *flag.FlagSet, args []string) error {
	switch verb {
	case "brokers":
		if err := fs.Parse(args); err != nil {
			return err
		}
		cd, err := a.c.DescribeCluster(ctx)
		if err != nil {
			return err
		}
		return a.print(cd, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "cluster %s, active controller %s, metadata offset %d\n\n", cd.ClusterID, cd.ControllerID, cd.MetadataOffset)
			fmt.Fprintln(w, "ID\tSTATE\tCELL\tRACK\tENDPOINT\tLEADERS\tREPLICAS\tFLAGS\tLAST HEARTBEAT")
			for _, b := range cd.Brokers {
				a.brokerLine(w, b)
			}
		})
	case "describe-broker", "demote", "undemote", "fence", "unfence", "decommission", "unregister":
		to := controller.NoBroker
		if verb == "decommission" {
			fs.Func("to", "move every replica to this broker (a replacement; default: placement chooses per partition)", func(v string) error {
				n, err := strconv.ParseInt(v, 10, 32)
				if err != nil || n < 0 {
					return fmt.Errorf("--to %q: want a broker id", v)
				}
				to = int32(n)
				return nil
			})
		}
		pos, err := parseInterspersed(fs, args)
		if err != nil {
			return err
		}
		id, err := brokerArg(pos)
		if err != nil {
			return err
		}
		var b *controller.BrokerDescription
		switch verb {
		case "describe-broker":
			b, err = a.c.DescribeBroker(ctx, id)
		case "demote":
			b, err = a.c.Demote(ctx, id)
		case "undemote":
			b, err = a.c.Undemote(ctx, id)
		case "fence":
			b, err = a.c.Fence(ctx, id)
		case "unfence":
			b, err = a.c.Unfence(ctx, id)
		case "decommission":
			b, err = a.c.Decommission(ctx, id, to)
		case "unregister":
			if err = a.c.Unregister(ctx, id); err == nil {
				return a.print(map[string]any{"unregistered": id}, func(w *tabwriter.Writer) { fmt.Fprintf(w, "broker %d unregistered\n", id) })
			}
		}
		if err != nil {
			return err
		}
		return a.print(b, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tSTATE\tCELL\tRACK\tENDPOINT\tLEADERS\tREPLICAS\tFLAGS\tLAST HEARTBEAT")
			a.brokerLine(w, *b)
		})
	case "topics":
		if err := fs.Parse(args); err != nil {
			return err
		}
		md, err := a.c.Metadata(ctx)
		if err != nil {
			return err
		}
		var topics []*controller.Topic
		for _, t := range md.Image.SortedTopics() {
			if fs.NArg() == 0 || contains(fs.Args(), t.Name) {
				topics = append(topics, t)
			}
		}
		return a.print(topics, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "TOPIC\tPARTITION\tLEADER\tEPOCH\tREPLICAS\tISR\tREASSIGNING")
			for _, t := range topics {
				for i, p := range t.Partitions {
					re := ""
					if p.Reassigning() {
						re = "+" + ids(p.AddingReplicas) + " -" + ids(p.RemovingReplicas)
					}
					fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", t.Name, i, p.Leader, p.LeaderEpoch, ids(p.Replicas), ids(p.ISR), re)
				}
			}
		})
	case "create-topic":
		parts := fs.Int("partitions", 1, "partition count")
		rf := fs.Int("replication-factor", 1, "replication factor")
		cell := fs.String("cell", "", "cell (default: the least-loaded)")
		validate := fs.Bool("validate-only", false, "only check")
		var configs []string
		fs.Func("config", "topic config k=v (repeatable)", func(s string) error { configs = append(configs, s); return nil })
		if len(args) == 0 {
			return errors.New("give the topic name")
		}
		name := args[0]
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ct := controller.CreateTopic{Name: name, Partitions: int32(*parts), ReplicationFactor: int16(*rf), Cell: *cell, Configs: map[string]string{}}
		for _, kv := range configs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("--config %q: want key=value", kv)
			}
			ct.Configs[k] = v
		}
		res, err := a.c.CreateTopics(ctx, controller.CreateTopicsRequest{Topics: []controller.CreateTopic{ct}, ValidateOnly: *validate})
		if err != nil {
			return err
		}
		return a.topicResults(res, "created")
	case "delete-topic":
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			return errors.New("give the topic names")
		}
		res, err := a.c.DeleteTopics(ctx, controller.DeleteTopicsRequest{Names: fs.Args()})
		if err != nil {
			return err
		}
		return a.topicResults(res, "deleted")
	case "elect-leaders":
		preferred := fs.Bool("preferred", false, "preferred election (default)")
		unclean := fs.Bool("unclean", false, "unclean election: leaderless partitions take a leader from outside the ISR (may lose data)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *preferred && *unclean {
			return errors.New("--preferred and --unclean exclude each other")
		}
		req := controller.ElectLeadersRequest{Type: controller.ElectPreferred}
		if *unclean {
			req.Type = controller.ElectUnclean
		}
		var md *controller.Delta
		for _, arg := range fs.Args() {
			topic, p, err := parseTP(arg, true)
			if err != nil {
				return err
			}
			if p >= 0 {
				req.Partitions = append(req.Partitions, controller.TopicPartition{Topic: topic, Partition: p})
				continue
			}
			if md == nil {
				if md, err = a.c.Metadata(ctx); err != nil {
					return err
				}
			}
			t := md.Image.Topics[topic]
			if t == nil {
				return fmt.Errorf("topic %q does not exist", topic)
			}
			for i := range t.Partitions {
				req.Partitions = append(req.Partitions, controller.TopicPartition{Topic: topic, Partition: int32(i)})
			}
		}
		res, err := a.c.ElectLeaders(ctx, req)
		if err != nil {
			return err
		}
		return a.print(res, func(w *tabwriter.Writer) {
			if len(res) == 0 {
				fmt.Fprintln(w, "no partition needed an election")
				return
			}
			fmt.Fprintln(w, "TOPIC\tPARTITION\tLEADER\tRESULT")
			for _, r := range res {
				fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", r.Topic, r.Partition, r.Leader, resultText(r.Error, "elected"))
			}
		})
	case "remove-from-isr":
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return errors.New("usage: remove-from-isr TOPIC:PARTITION BROKER")
		}
		topic, p, err := parseTP(fs.Arg(0), false)
		if err != nil {
			return err
		}
		id, err := brokerArg(fs.Args()[1:])
		if err != nil {
			return err
		}
		np, err := a.c.RemoveFromISR(ctx, topic, p, id)
		if err != nil {
			return err
		}
		return a.print(np, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "%s:%d leader %d, ISR %s (epochs %d/%d)\n", topic, p, np.Leader, ids(np.ISR), np.LeaderEpoch, np.PartitionEpoch)
		})
	case "reassign":
		list := fs.Bool("list", false, "list reassignments in progress")
		cancel := fs.Bool("cancel", false, "cancel the reassignments of the named partitions")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *list {
			rs, err := a.c.ListReassignments(ctx)
			if err != nil {
				return err
			}
			return a.print(rs, func(w *tabwriter.Writer) {
				if len(rs) == 0 {
					fmt.Fprintln(w, "no reassignment in progress")
					return
				}
				fmt.Fprintln(w, "TOPIC\tPARTITION\tREPLICAS\tADDING\tREMOVING\tISR\tLEADER")
				for _, r := range rs {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%d\n", r.Topic, r.Partition, ids(r.Replicas), ids(r.AddingReplicas), ids(r.RemovingReplicas), ids(r.ISR), r.Leader)
				}
			})
		}
		if fs.NArg() == 0 {
			return errors.New("usage: reassign TOPIC:PARTITION=B1,B2,... | reassign --cancel TOPIC:PARTITION | reassign --list")
		}
		var rs []controller.Reassignment
		for _, arg := range fs.Args() {
			tp, list, hasList := strings.Cut(arg, "=")
			topic, p, err := parseTP(tp, false)
			if err != nil {
				return err
			}
			r := controller.Reassignment{Topic: topic, Partition: p}
			switch {
			case *cancel && hasList:
				return fmt.Errorf("%q: --cancel takes TOPIC:PARTITION without replicas", arg)
			case !*cancel && !hasList:
				return fmt.Errorf("%q: want TOPIC:PARTITION=B1,B2,...", arg)
			case hasList:
				for _, s := range strings.Split(list, ",") {
					n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
					if err != nil {
						return fmt.Errorf("%q: broker %q is not a number", arg, s)
					}
					r.Replicas = append(r.Replicas, int32(n))
				}
			}
			rs = append(rs, r)
		}
		res, err := a.c.Reassign(ctx, rs)
		if err != nil {
			return err
		}
		return a.print(res, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "TOPIC\tPARTITION\tRESULT")
			for _, r := range res {
				fmt.Fprintf(w, "%s\t%d\t%s\n", r.Topic, r.Partition, resultText(r.Error, "accepted"))
			}
		})
	case "quorum":
		if err := fs.Parse(args); err != nil {
			return err
		}
		qd, err := a.c.DescribeQuorum(ctx)
		if err != nil {
			return err
		}
		return a.print(qd, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "leader %s (%s), term %d; answered by %s: applied %d, commit %d, last %d\n\n", qd.LeaderID, qd.LeaderAddr, qd.Term, qd.Self, qd.AppliedIndex, qd.CommitIndex, qd.LastIndex)
			fmt.Fprintln(w, "VOTER\tRAFT\tAPI")
			sort.Slice(qd.Voters, func(i, j int) bool { return qd.Voters[i].ID < qd.Voters[j].ID })
			for _, v := range qd.Voters {
				mark := ""
				if v.ID == qd.LeaderID {
					mark = " (leader)"
				}
				fmt.Fprintf(w, "%s%s\t%s\t%s\n", v.ID, mark, v.RaftAddr, v.APIAddr)
			}
		})
	}
	return fmt.Errorf("unknown admin verb %q; run vigil admin -h", verb)
}

func (a *admin) brokerLine(w io.Writer, b controller.BrokerDescription) {
	var flags []string
	if b.Demoted {
		flags = append(flags, "demoted")
	}
	if b.AdminFenced {
		flags = append(flags, "admin-fenced")
	}
	if b.Decommissioning {
		flags = append(flags, "decommissioning")
	}
	hb := "-"
	if b.LastHeartbeatAge >= 0 {
		hb = b.LastHeartbeatAge.Round(100*time.Millisecond).String() + " ago"
	}
	rack := b.Rack
	if rack == "" {
		rack = "-"
	}
	fl := strings.Join(flags, ",")
	if fl == "" {
		fl = "-"
	}
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", b.ID, b.State, b.Cell, rack, b.Endpoint, b.Leaders, b.Replicas, fl, hb)
}

func (a *admin) topicResults(res []controller.TopicResult, done string) error {
	var failed error
	for _, r := range res {
		if r.Error != nil {
			failed = errors.New("some topics failed")
		}
	}
	err := a.print(res, func(w *tabwriter.Writer) {
		for _, r := range res {
			fmt.Fprintf(w, "%s\t%s\n", r.Name, resultText(r.Error, done))
		}
	})
	if err != nil {
		return err
	}
	return failed
}

func resultText(e *controller.Error, ok string) string {
	if e == nil {
		return ok
	}
	return e.Error()
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
