package broker

import (
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/vigilhq/vigil/controller"
)

// handleDescribeConfigs describes topics (every topic config with value,
// source, synonyms and, on request, documentation) and this broker (its
// static settings, all read-only).
func (b *Broker) handleDescribeConfigs(r *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range r.Resources {
		res := kmsg.NewDescribeConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		want := func(name string) bool {
			if rr.ConfigNames == nil {
				return true
			}
			for _, n := range rr.ConfigNames {
				if n == name {
					return true
				}
			}
			return false
		}
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			t := b.meta.lookup(rr.ResourceName)
			if t == nil {
				res.ErrorCode = kerr.UnknownTopicOrPartition.Code
				res.ErrorMessage = strp(fmt.Sprintf("topic %q does not exist", rr.ResourceName))
				break
			}
			for _, cv := range resolveTopicConfigs(t.configs, b.cfg.TopicDefaults) {
				if want(cv.def.name) {
					res.Configs = append(res.Configs, b.describeTopicConfig(r, t, cv))
				}
			}
		case kmsg.ConfigResourceTypeBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(b.cfg.NodeID)) {
				res.ErrorCode = kerr.InvalidRequest.Code
				res.ErrorMessage = strp(fmt.Sprintf("this is broker %d; send the request to broker %s", b.cfg.NodeID, rr.ResourceName))
				break
			}
			for _, bc := range b.brokerConfigs() {
				if want(bc.Name) {
					res.Configs = append(res.Configs, bc)
				}
			}
		default:
			res.ErrorCode = kerr.InvalidRequest.Code
			res.ErrorMessage = strp(fmt.Sprintf("describing configs of resource type %v is not supported", rr.ResourceType))
		}
		resp.Resources = append(resp.Resources, res)
	}
	return resp
}

func (b *Broker) describeTopicConfig(r *kmsg.DescribeConfigsRequest, t *topic, cv configValue) kmsg.DescribeConfigsResponseResourceConfig {
	c := kmsg.NewDescribeConfigsResponseResourceConfig()
	c.Name = cv.def.name
	c.Value = strp(cv.value)
	c.Source = cv.source
	c.IsDefault = cv.source == kmsg.ConfigSourceDefaultConfig
	c.ConfigType = cv.def.typ
	if r.IncludeDocumentation {
		c.Documentation = strp(cv.def.doc)
	}
	if r.IncludeSynonyms {
		syn := func(name, value string, src kmsg.ConfigSource) {
			s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
			s.Name, s.Value, s.Source = name, strp(value), src
			c.ConfigSynonyms = append(c.ConfigSynonyms, s)
		}
		if v, ok := t.configs[cv.def.name]; ok {
			syn(cv.def.name, v, kmsg.ConfigSourceDynamicTopicConfig)
		}
		if v, ok := b.cfg.TopicDefaults[cv.def.name]; ok {
			syn(cv.def.synonym, v, kmsg.ConfigSourceStaticBrokerConfig)
		}
		syn(cv.def.synonym, cv.def.def, kmsg.ConfigSourceDefaultConfig)
	}
	return c
}

// brokerConfigs lists this broker's settings as DescribeConfigs reports
// them: the static settings and the broker-level defaults of topic configs.
func (b *Broker) brokerConfigs() []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	add := func(name, value string, typ kmsg.ConfigType, src kmsg.ConfigSource) {
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly, c.ConfigType, c.Source = name, strp(value), true, typ, src
		c.IsDefault = src == kmsg.ConfigSourceDefaultConfig
		out = append(out, c)
	}
	static := kmsg.ConfigSourceStaticBrokerConfig
	add("auto.create.topics.enable", strconv.FormatBool(b.cfg.AutoCreateTopics), kmsg.ConfigTypeBoolean, static)
	add("broker.id", strconv.Itoa(int(b.cfg.NodeID)), kmsg.ConfigTypeInt, static)
	add("broker.rack", b.cfg.Rack, kmsg.ConfigTypeString, static)
	add("log.cleaner.backoff.ms", strconv.FormatInt(b.cfg.LogCleanerBackoff.Milliseconds(), 10), kmsg.ConfigTypeLong, static)
	add("log.cleaner.dedupe.buffer.size", strconv.FormatInt(b.cfg.LogCleanerDedupeBufferSize, 10), kmsg.ConfigTypeLong, static)
	add("log.cleaner.enable", strconv.FormatBool(b.cfg.LogCleanerThreads > 0), kmsg.ConfigTypeBoolean, static)
	ioRate := math.MaxFloat64 // Kafka's "unlimited"
	if b.cfg.LogCleanerIOMaxBytesPerSecond > 0 {
		ioRate = b.cfg.LogCleanerIOMaxBytesPerSecond
	}
	// Java's Double.toString: 1.7976931348623157E308.
	add("log.cleaner.io.max.bytes.per.second", strings.Replace(strconv.FormatFloat(ioRate, 'G', -1, 64), "E+", "E", 1), kmsg.ConfigTypeDouble, static)
	add("log.cleaner.threads", strconv.Itoa(b.cfg.LogCleanerThreads), kmsg.ConfigTypeInt, static)
	add("log.dirs", b.cfg.DataDir, kmsg.ConfigTypeString, static)
	// The reassignment throttle, under the name of Kafka's leader-side
	// replication throttle (Long.MAX_VALUE: unlimited).
	throttle := int64(math.MaxInt64)
	if r := b.reassignThrottle.limit(); r > 0 && r < math.MaxInt64 {
		throttle = int64(r)
	}
	add("leader.replication.throttled.rate", strconv.FormatInt(throttle, 10), kmsg.ConfigTypeLong, static)
	add("log.retention.check.interval.ms", strconv.FormatInt(b.cfg.RetentionCheckInterval.Milliseconds(), 10), kmsg.ConfigTypeLong, static)
	add("node.id", strconv.Itoa(int(b.cfg.NodeID)), kmsg.ConfigTypeInt, static)
	add("num.partitions", strconv.Itoa(int(b.cfg.NumPartitions)), kmsg.ConfigTypeInt, static)
	add("socket.request.max.bytes", strconv.Itoa(int(b.cfg.SocketRequestMaxBytes)), kmsg.ConfigTypeInt, static)
	for _, cv := range resolveTopicConfigs(nil, b.cfg.TopicDefaults) {
		add(cv.def.synonym, cv.value, cv.def.typ, cv.source)
	}
	return out
}

// errBrokerConfigsStatic is the answer to altering broker configs.
const errBrokerConfigsStatic = "broker configs are static: set them in the broker's config file or flags and restart it"

// handleAlterConfigs replaces a topic's config overrides with the given set
// (the legacy, non-incremental API).
func (b *Broker) handleAlterConfigs(r *kmsg.AlterConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range r.Resources {
		res := kmsg.NewAlterConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		code, msg := b.alterTopicConfigs(rr.ResourceType, rr.ResourceName, r.ValidateOnly, func(map[string]string) (map[string]string, error) {
			next := make(map[string]string, len(rr.Configs))
			for _, c := range rr.Configs {
				if _, dup := next[c.Name]; dup {
					return nil, errorf(kerr.InvalidRequest, "config %s appears more than once", c.Name)
				}
				if c.Value == nil {
					return nil, errorf(kerr.InvalidConfig, "config %s has a null value; leave it out to use the default", c.Name)
				}
				v, err := parseTopicConfig(c.Name, *c.Value)
				if err != nil {
					return nil, errorf(kerr.InvalidConfig, "%v", err)
				}
				next[c.Name] = v
			}
			return next, nil
		})
		res.ErrorCode = code
		if msg != "" {
			res.ErrorMessage = strp(msg)
		}
		resp.Resources = append(resp.Resources, res)
	}
	return resp
}

// handleIncrementalAlterConfigs applies SET, DELETE, APPEND and SUBTRACT
// operations to a topic's overrides.
func (b *Broker) handleIncrementalAlterConfigs(r *kmsg.IncrementalAlterConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range r.Resources {
		res := kmsg.NewIncrementalAlterConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		code, msg := b.alterTopicConfigs(rr.ResourceType, rr.ResourceName, r.ValidateOnly, func(cur map[string]string) (map[string]string, error) {
			next := make(map[string]string, len(cur)+len(rr.Configs))
			for k, v := range cur {
				next[k] = v
			}
			seen := map[string]bool{}
			for _, c := range rr.Configs {
				if seen[c.Name] {
					return nil, errorf(kerr.InvalidRequest, "config %s appears more than once", c.Name)
				}
				seen[c.Name] = true
				def, ok := topicConfigIndex[c.Name]
				if !ok {
					_, err := parseTopicConfig(c.Name, "")
					return nil, errorf(kerr.InvalidConfig, "%v", err)
				}
				value := ""
				if c.Value != nil {
					value = *c.Value
				}
				switch c.Op {
				case kmsg.IncrementalAlterConfigOpSet:
					if c.Value == nil {
						return nil, errorf(kerr.InvalidConfig, "SET of %s needs a value", c.Name)
					}
				case kmsg.IncrementalAlterConfigOpDelete:
					delete(next, c.Name)
					continue
				case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
					if def.typ != kmsg.ConfigTypeList {
						return nil, errorf(kerr.InvalidConfig, "%s is not a list; APPEND and SUBTRACT apply only to lists", c.Name)
					}
					value = editList(effective(c.Name, next, b.cfg.TopicDefaults), value, c.Op == kmsg.IncrementalAlterConfigOpAppend)
				default:
					return nil, errorf(kerr.InvalidRequest, "unknown operation %d for %s", c.Op, c.Name)
				}
				v, err := parseTopicConfig(c.Name, value)
				if err != nil {
					return nil, errorf(kerr.InvalidConfig, "%v", err)
				}
				next[c.Name] = v
			}
			return next, nil
		})
		res.ErrorCode = code
		if msg != "" {
			res.ErrorMessage = strp(msg)
		}
		resp.Resources = append(resp.Resources, res)
	}
	return resp
}

// effective returns a topic config's value given the overrides.
func effective(name string, overrides, brokerDefaults map[string]string) string {
	if v, ok := overrides[name]; ok {
		return v
	}
	if v, ok := brokerDefaults[name]; ok {
		return v
	}
	return topicConfigIndex[name].def
}

// editList appends (or subtracts) the comma-separated items of change to
// (from) the list cur, keeping order and dropping duplicates.
func editList(cur, change string, add bool) string {
	var items []string
	has := map[string]bool{}
	for _, it := range strings.Split(cur, ",") {
		if it = strings.TrimSpace(it); it != "" && !has[it] {
			has[it] = true
			items = append(items, it)
		}
	}
	for _, it := range strings.Split(change, ",") {
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		if add && !has[it] {
			has[it] = true
			items = append(items, it)
		} else if !add && has[it] {
			delete(has, it)
			for i, x := range items {
				if x == it {
					items = append(items[:i], items[i+1:]...)
					break
				}
			}
		}
	}
	return strings.Join(items, ",")
}

// alterTopicConfigs computes a resource's new overrides with compute and,
// unless validateOnly, applies them.
func (b *Broker) alterTopicConfigs(typ kmsg.ConfigResourceType, name string, validateOnly bool, compute func(cur map[string]string) (map[string]string, error)) (int16, string) {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
	case kmsg.ConfigResourceTypeBroker:
		return kerr.InvalidRequest.Code, errBrokerConfigsStatic
	default:
		return kerr.InvalidRequest.Code, fmt.Sprintf("altering configs of resource type %v is not supported", typ)
	}
	err := b.updateConfigs(name, compute, validateOnly)
	if err == nil {
		return 0, ""
	}
	code, msg := errorCodeOf(err, kerr.UnknownServerError)
	return code.Code, msg
}

// updateConfigs computes a topic's new config overrides from its current
// ones, checks them and, unless validateOnly, has the quorum store them,
// answering once this broker's image has them.
func (b *Broker) updateConfigs(name string, compute func(cur map[string]string) (map[string]string, error), validateOnly bool) error {
	t := b.meta.lookup(name)
	if t == nil {
		return errorf(kerr.UnknownTopicOrPartition, "topic %q does not exist", name)
	}
	configs, err := compute(t.configs)
	if err != nil {
		return err
	}
	if err := checkTopicConfigs(configs, b.cfg.TopicDefaults); err != nil {
		return errorf(kerr.InvalidConfig, "%v", err)
	}
	ctx, cancel := b.adminContext()
	defer cancel()
	if _, err := b.link.cl.AlterConfigs(ctx, controller.AlterConfigsRequest{Topic: name, Set: configs, Replace: true, ValidateOnly: validateOnly}); err != nil || validateOnly {
		return err
	}
	return b.meta.waitFor(ctx, func(set *topicSet) bool {
		cur := set.byName[name]
		return cur == nil || maps.Equal(cur.configs, configs)
	})
}
