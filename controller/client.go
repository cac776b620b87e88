package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Addrs are the controllers' HTTP API addresses (host:port). Any subset
	// works: the client follows NOT_CONTROLLER answers to the leader.
	Addrs []string
	// Token is the admin token, sent as "Authorization: Bearer <token>".
	Token string
	// HTTPClient is the HTTP client (a default one when nil).
	HTTPClient *http.Client
	// AttemptTimeout bounds one HTTP attempt (10s when zero); a
	// WatchMetadata attempt gets its wait on top.
	AttemptTimeout time.Duration
	// RetryTimeout bounds all attempts of a call whose context has no
	// deadline (30s when zero).
	RetryTimeout time.Duration
	// WatchWait is how long WatchMetadata waits for a change (25s when zero).
	WatchWait time.Duration
}

// Client calls the controller API. It finds the active controller by
// itself: it remembers the last one that answered, follows NOT_CONTROLLER
// answers that name the leader, and otherwise tries every address in turn,
// backing off between rounds, until the call succeeds, fails with a
// non-retriable error, or its deadline passes.
//
// A write whose connection broke mid-request may have been applied; the
// retry then reports the state as found (TOPIC_ALREADY_EXISTS for a topic
// creation, for instance). Every method is safe for concurrent use.
type Client struct {
	cfg  ClientConfig
	hc   *http.Client
	mu   sync.Mutex
	addr []string
	hint string // address that last answered as the active controller
}

// NewClient returns a client for the controllers at cfg.Addrs.
func NewClient(cfg ClientConfig) (*Client, error) {
	var addrs []string
	for _, a := range cfg.Addrs {
		for _, p := range strings.Split(a, ",") {
			if p = strings.TrimSpace(p); p != "" {
				addrs = append(addrs, strings.TrimPrefix(strings.TrimPrefix(p, "http://"), "https://"))
			}
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no controller addresses given; pass host:port of at least one controller")
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 10 * time.Second
	}
	if cfg.RetryTimeout <= 0 {
		cfg.RetryTimeout = 30 * time.Second
	}
	if cfg.WatchWait <= 0 {
		cfg.WatchWait = 25 * time.Second
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}}
	}
	return &Client{cfg: cfg, hc: hc, addr: addrs}, nil
}

// Close releases the client's idle connections. Calls still work after it.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// candidates returns the addresses to try, the hinted leader first.
func (c *Client) candidates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.addr)+1)
	if c.hint != "" {
		out = append(out, c.hint)
	}
	for _, a := range c.addr {
		if a != c.hint {
			out = append(out, a)
		}
	}
	return out
}

func (c *Client) setHint(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hint = addr
}

// call sends one API call with retries. body and out may be nil.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body, out any, extra time.Duration) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RetryTimeout+extra)
		defer cancel()
	}
	backoff := 50 * time.Millisecond
	var lastErr error
	for {
		cands := c.candidates()
		followed := false
		for i := 0; i < len(cands); i++ {
			addr := cands[i]
			err := c.attempt(ctx, addr, method, path, query, payload, out, extra)
			var e *Error
			switch {
			case err == nil:
				c.setHint(addr)
				return nil
			case errors.As(err, &e) && !e.Retriable():
				c.setHint(addr)
				return e
			}
			lastErr = err
			if ctx.Err() != nil {
				return fmt.Errorf("controller call %s %s: %w (last error: %v)", method, path, ctx.Err(), lastErr)
			}
			if e != nil && e.Code == CodeNotController && e.LeaderAddr != "" && e.LeaderAddr != addr && !followed {
				// Try the leader it named next (once per round).
				followed = true
				c.setHint(e.LeaderAddr)
				cands = append(cands[:i+1], append([]string{e.LeaderAddr}, cands[i+1:]...)...)
				continue
			}
			c.mu.Lock()
			if c.hint == addr {
				c.hint = ""
			}
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("controller call %s %s: %w (last error: %v)", method, path, ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// attempt sends one request to addr.
func (c *Client) attempt(ctx context.Context, addr, method, path string, query url.Values, payload []byte, out any, extra time.Duration) error {
	actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout+extra)
	defer cancel()
	u := "http://" + addr + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(actx, method, u, rd)
	if err != nil {
		return err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
			return eb.Error
		}
		return fmt.Errorf("controller %s answered %s: %.200s", addr, resp.Status, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding answer of controller %s: %w", addr, err)
	}
	return nil
}

// ---- broker side ----

// Register registers a broker (or re-registers it after a restart) and
// returns its new broker epoch. The broker starts fenced; its first
// heartbeat unfences it.
func (c *Client) Register(ctx context.Context, reg BrokerRegistration) (int64, error) {
	var out RegisterResult
	err := c.call(ctx, http.MethodPost, "/v1/brokers/register", nil, reg, &out, 0)
	return out.Epoch, err
}

// Heartbeat reports that broker id (registration epoch) is alive;
// wantShutdown asks for a controlled shutdown, which is done when the
// result says ShutdownReady. STALE_BROKER_EPOCH or BROKER_ID_NOT_REGISTERED
// mean the broker must Register again.
func (c *Client) Heartbeat(ctx context.Context, id int32, epoch int64, wantShutdown bool) (HeartbeatResult, error) {
	var out HeartbeatResult
	err := c.call(ctx, http.MethodPost, "/v1/brokers/heartbeat", nil, HeartbeatRequest{ID: id, Epoch: epoch, WantShutdown: wantShutdown}, &out, 0)
	return out, err
}

// AlterPartition proposes a partition leader's new ISR and returns the
// partition's new state. Errors: FENCED_LEADER_EPOCH (no longer leader),
// INVALID_UPDATE_VERSION (stale partition epoch: refresh and retry),
// INELIGIBLE_REPLICA (a replica added is fenced or shutting down),
// NOT_LEADER_OR_FOLLOWER, STALE_BROKER_EPOCH, INVALID_REQUEST.
func (c *Client) AlterPartition(ctx context.Context, req AlterPartitionRequest) (*Partition, error) {
	var out Partition
	if err := c.call(ctx, http.MethodPost, "/v1/partitions/alter", nil, req, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// AllocateProducerIDs reserves the next block of producer ids for broker
// id (registration epoch); ids are never handed out twice in the cluster.
func (c *Client) AllocateProducerIDs(ctx context.Context, id int32, epoch int64) (ProducerIDBlock, error) {
	var out ProducerIDBlock
	err := c.call(ctx, http.MethodPost, "/v1/producer-ids/allocate", nil, allocateProducerIDsBody{BrokerID: id, BrokerEpoch: epoch}, &out, 0)
	return out, err
}

// WatchMetadata long-polls for metadata after afterOffset: it returns as
// soon as a change after it is applied, with the changes in log order, or
// the whole image when afterOffset is -1 or too old to serve as changes,
// or an empty Delta after the wait (ClientConfig.WatchWait). Pass the
// returned Offset to the next call.
func (c *Client) WatchMetadata(ctx context.Context, afterOffset int64) (*Delta, error) {
	var out Delta
	q := url.Values{"after": {strconv.FormatInt(afterOffset, 10)}, "wait": {c.cfg.WatchWait.String()}}
	if err := c.call(ctx, http.MethodGet, "/v1/metadata/watch", q, nil, &out, c.cfg.WatchWait); err != nil {
		return nil, err
	}
	return &out, nil
}

// ---- admin side ----

// Metadata returns the active controller's whole image and its offset.
func (c *Client) Metadata(ctx context.Context) (*Delta, error) {
	var out Delta
	if err := c.call(ctx, http.MethodGet, "/v1/metadata", nil, nil, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateTopics creates topics (or, with ValidateOnly, checks that they
// could be created). Per-topic failures are in the results.
func (c *Client) CreateTopics(ctx context.Context, req CreateTopicsRequest) ([]TopicResult, error) {
	var out resultsBody[TopicResult]
	err := c.call(ctx, http.MethodPost, "/v1/topics/create", nil, req, &out, 0)
	return out.Results, err
}

// DeleteTopics deletes topics by name. Per-topic failures are in the results.
func (c *Client) DeleteTopics(ctx context.Context, req DeleteTopicsRequest) ([]TopicResult, error) {
	var out resultsBody[TopicResult]
	err := c.call(ctx, http.MethodPost, "/v1/topics/delete", nil, req, &out, 0)
	return out.Results, err
}

// CreatePartitions grows topics. Per-topic failures are in the results.
func (c *Client) CreatePartitions(ctx context.Context, req CreatePartitionsRequest) ([]TopicResult, error) {
	var out resultsBody[TopicResult]
	err := c.call(ctx, http.MethodPost, "/v1/topics/partitions", nil, req, &out, 0)
	return out.Results, err
}

// AlterConfigs changes a topic's config overrides and returns the new
// overrides (with ValidateOnly: what they would be).
func (c *Client) AlterConfigs(ctx context.Context, req AlterConfigsRequest) (map[string]string, error) {
	var out ConfigsResult
	err := c.call(ctx, http.MethodPost, "/v1/configs/alter", nil, req, &out, 0)
	return out.Configs, err
}

// DescribeConfigs returns a topic's config overrides.
func (c *Client) DescribeConfigs(ctx context.Context, topic string) (map[string]string, error) {
	var out ConfigsResult
	err := c.call(ctx, http.MethodGet, "/v1/configs", url.Values{"topic": {topic}}, nil, &out, 0)
	return out.Configs, err
}

// DescribeCluster returns the cluster id, the active controller and every
// broker with its state, cell, rack, leader count and heartbeat age.
func (c *Client) DescribeCluster(ctx context.Context) (*ClusterDescription, error) {
	var out ClusterDescription
	if err := c.call(ctx, http.MethodGet, "/v1/cluster", nil, nil, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// DescribeBroker returns one broker's description.
func (c *Client) DescribeBroker(ctx context.Context, id int32) (*BrokerDescription, error) {
	var out BrokerDescription
	if err := c.call(ctx, http.MethodGet, "/v1/brokers/"+strconv.Itoa(int(id)), nil, nil, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) brokerAction(ctx context.Context, id int32, action string) (*BrokerDescription, error) {
	var out BrokerDescription
	if err := c.call(ctx, http.MethodPost, "/v1/brokers/"+strconv.Itoa(int(id))+"/"+action, nil, struct{}{}, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Demote moves every leadership of broker id to another in-sync replica
// and keeps it from leading while any other in-sync replica can.
func (c *Client) Demote(ctx context.Context, id int32) (*BrokerDescription, error) {
	return c.brokerAction(ctx, id, "demote")
}

// Undemote lets broker id lead again (a preferred election moves
// leaderships back).
func (c *Client) Undemote(ctx context.Context, id int32) (*BrokerDescription, error) {
	return c.brokerAction(ctx, id, "undemote")
}

// Fence fences broker id until Unfence: its leaderships move away and it
// leaves the ISRs that stay non-empty without it.
func (c *Client) Fence(ctx context.Context, id int32) (*BrokerDescription, error) {
	return c.brokerAction(ctx, id, "fence")
}

// Unfence clears an operator's fence; the broker is unfenced at once if it
// is heartbeating, else by its next heartbeat.
func (c *Client) Unfence(ctx context.Context, id int32) (*BrokerDescription, error) {
	return c.brokerAction(ctx, id, "unfence")
}

// Decommission marks broker id decommissioning (no new replicas go to it)
// and moves every replica of it to broker to, or, when to is NoBroker, to
// other brokers of its cell chosen by placement; the broker becomes
// decommissioned once the moves complete.
func (c *Client) Decommission(ctx context.Context, id, to int32) (*BrokerDescription, error) {
	req := DecommissionRequest{}
	if to != NoBroker {
		req.To = &to
	}
	var out BrokerDescription
	if err := c.call(ctx, http.MethodPost, "/v1/brokers/"+strconv.Itoa(int(id))+"/decommission", nil, req, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unregister removes broker id, which must hold no replicas.
func (c *Client) Unregister(ctx context.Context, id int32) error {
	return c.call(ctx, http.MethodPost, "/v1/brokers/"+strconv.Itoa(int(id))+"/unregister", nil, struct{}{}, nil, 0)
}

// RemoveFromISR takes broker out of a partition's ISR (refused if it is
// the only member) and returns the partition's new state.
func (c *Client) RemoveFromISR(ctx context.Context, topic string, partition, broker int32) (*Partition, error) {
	var out Partition
	if err := c.call(ctx, http.MethodPost, "/v1/partitions/remove-from-isr", nil, RemoveFromISRRequest{Topic: topic, Partition: partition, Broker: broker}, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}

// ElectLeaders runs preferred or unclean elections on the given partitions
// (all that need one when none are given).
func (c *Client) ElectLeaders(ctx context.Context, req ElectLeadersRequest) ([]ElectionResult, error) {
	var out resultsBody[ElectionResult]
	err := c.call(ctx, http.MethodPost, "/v1/partitions/elect", nil, req, &out, 0)
	return out.Results, err
}

// Reassign starts (or, with nil Replicas, cancels) partition
// reassignments. The controller completes each once its new replicas are
// in the ISR.
func (c *Client) Reassign(ctx context.Context, rs []Reassignment) ([]ReassignmentResult, error) {
	var out resultsBody[ReassignmentResult]
	err := c.call(ctx, http.MethodPost, "/v1/partitions/reassign", nil, reassignBody{Reassignments: rs}, &out, 0)
	return out.Results, err
}

// ListReassignments returns the reassignments in progress.
func (c *Client) ListReassignments(ctx context.Context) ([]ReassignmentStatus, error) {
	var out reassignmentsBody
	err := c.call(ctx, http.MethodGet, "/v1/partitions/reassignments", nil, nil, &out, 0)
	return out.Reassignments, err
}

// DescribeQuorum returns the quorum as the first controller that answers
// sees it: leader, voters, indexes.
func (c *Client) DescribeQuorum(ctx context.Context) (*QuorumDescription, error) {
	var out QuorumDescription
	if err := c.call(ctx, http.MethodGet, "/v1/quorum", nil, nil, &out, 0); err != nil {
		return nil, err
	}
	return &out, nil
}
