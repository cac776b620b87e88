package broker

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	vlog "github.com/vigilhq/vigil/broker/log"
)

// topicConfigDef describes one topic-level config the broker understands:
// its Kafka name, the broker-level synonym that sets its default, its type,
// Kafka's default, and how a value is checked.
type topicConfigDef struct {
	name    string
	synonym string // broker config name, as Kafka reports it in synonyms
	typ     kmsg.ConfigType
	def     string
	doc     string
	check   func(string) error
}

func intRange(lo, hi int64) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		if v < lo || v > hi {
			return fmt.Errorf("%d is out of range [%d, %d]", v, lo, hi)
		}
		return nil
	}
}

func oneOf(allowed ...string) func(string) error {
	return func(s string) error {
		for _, a := range allowed {
			if s == a {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", s, strings.Join(allowed, ", "))
	}
}

func boolValue(s string) error {
	if s != "true" && s != "false" {
		return fmt.Errorf("%q is not true or false", s)
	}
	return nil
}

func cleanupPolicy(s string) error {
	if s == "" {
		return fmt.Errorf("cleanup.policy must name delete, compact or both")
	}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "delete" && p != "compact" {
			return fmt.Errorf("%q is not delete or compact", p)
		}
	}
	return nil
}

// ratio checks a Double config in [0, 1].
func ratio(s string) error {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) {
		return fmt.Errorf("%q is not a number", s)
	}
	if v < 0 || v > 1 {
		return fmt.Errorf("%v is out of range [0, 1]", v)
	}
	return nil
}

const maxLong = math.MaxInt64

var topicConfigDefs = []topicConfigDef{
	{"cleanup.policy", "log.cleanup.policy", kmsg.ConfigTypeList, "delete", "delete: remove old segments by retention; compact: keep the latest record per key (records must have keys); both: compact,delete", cleanupPolicy},
	{"delete.retention.ms", "log.cleaner.delete.retention.ms", kmsg.ConfigTypeLong, "86400000", "how long a tombstone (null value) is kept after the cleaning that found it, on compacted topics", intRange(0, maxLong)},
	{"flush.messages", "log.flush.interval.messages", kmsg.ConfigTypeLong, strconv.FormatInt(maxLong, 10), "fsync after this many records (1: every write)", intRange(1, maxLong)},
	{"flush.ms", "log.flush.interval.ms", kmsg.ConfigTypeLong, strconv.FormatInt(maxLong, 10), "fsync when unflushed data is this old", intRange(0, maxLong)},
	{"index.interval.bytes", "log.index.interval.bytes", kmsg.ConfigTypeInt, "4096", "bytes between offset index entries", intRange(0, math.MaxInt32)},
	{"max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", kmsg.ConfigTypeLong, strconv.FormatInt(maxLong, 10), "longest a record stays uncompacted: the active segment is rolled and the log cleaned regardless of the dirty ratio after this", intRange(1, maxLong)},
	{"max.message.bytes", "message.max.bytes", kmsg.ConfigTypeInt, "1048588", "largest record batch accepted (0: none, as in Kafka)", intRange(0, math.MaxInt32)},
	{"message.timestamp.type", "log.message.timestamp.type", kmsg.ConfigTypeString, "CreateTime", "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock", oneOf("CreateTime", "LogAppendTime")},
	{"min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", kmsg.ConfigTypeDouble, "0.5", "share of a compacted log that must be dirty (not yet cleaned) before the cleaner cleans it", ratio},
	{"min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", kmsg.ConfigTypeLong, "0", "shortest time a record stays uncompacted", intRange(0, maxLong)},
	{"min.insync.replicas", "min.insync.replicas", kmsg.ConfigTypeInt, "1", "replicas that must acknowledge an acks=all write", intRange(1, math.MaxInt32)},
	{"retention.bytes", "log.retention.bytes", kmsg.ConfigTypeLong, "-1", "largest size of a partition before old segments are deleted (-1: no limit)", intRange(-1, maxLong)},
	{"retention.ms", "log.retention.ms", kmsg.ConfigTypeLong, "604800000", "age after which segments are deleted (-1: forever)", intRange(-1, maxLong)},
	{"segment.bytes", "log.segment.bytes", kmsg.ConfigTypeInt, "1073741824", "size at which a segment is rolled", intRange(14, math.MaxInt32)},
	{"segment.index.bytes", "log.index.size.max.bytes", kmsg.ConfigTypeInt, "10485760", "size of a segment's offset index before the segment is rolled", intRange(8, math.MaxInt32)},
	{"segment.ms", "log.roll.ms", kmsg.ConfigTypeLong, "604800000", "age at which the active segment is rolled", intRange(1, maxLong)},
	{"unclean.leader.election.enable", "unclean.leader.election.enable", kmsg.ConfigTypeBoolean, "false", "allow an out-of-sync replica to become leader (may lose data)", boolValue},
}

var topicConfigIndex = func() map[string]*topicConfigDef {
	m := make(map[string]*topicConfigDef, len(topicConfigDefs))
	for i := range topicConfigDefs {
		m[topicConfigDefs[i].name] = &topicConfigDefs[i]
	}
	return m
}()

// parseTopicConfig checks one name=value pair and returns the value as stored.
// ValidateTopicConfig checks one topic config setting and returns its
// normalized value, or an error saying what is wrong. The controller
// quorum uses it (controller.ConfigValidator) to refuse bad values.
func ValidateTopicConfig(name, value string) (string, error) { return parseTopicConfig(name, value) }

func parseTopicConfig(name, value string) (string, error) {
	def, ok := topicConfigIndex[name]
	if !ok {
		known := make([]string, 0, len(topicConfigDefs))
		for _, d := range topicConfigDefs {
			known = append(known, d.name)
		}
		return "", fmt.Errorf("unknown topic config %q; supported: %s", name, strings.Join(known, ", "))
	}
	value = strings.TrimSpace(value)
	if err := def.check(value); err != nil {
		return "", fmt.Errorf("invalid value for %s: %v", name, err)
	}
	return value, nil
}

// checkTopicConfigs checks what single values cannot: that
// min.compaction.lag.ms is at most max.compaction.lag.ms, as Kafka does.
func checkTopicConfigs(overrides, brokerDefaults map[string]string) error {
	minLag, _ := strconv.ParseInt(effective("min.compaction.lag.ms", overrides, brokerDefaults), 10, 64)
	maxLag, _ := strconv.ParseInt(effective("max.compaction.lag.ms", overrides, brokerDefaults), 10, 64)
	if minLag > maxLag {
		return fmt.Errorf("conflicting topic configs: min.compaction.lag.ms (%d) is greater than max.compaction.lag.ms (%d)", minLag, maxLag)
	}
	return nil
}

// hasPolicy reports whether the cleanup.policy list holds policy.
func hasPolicy(list, policy string) bool {
	for _, p := range strings.Split(list, ",") {
		if strings.TrimSpace(p) == policy {
			return true
		}
	}
	return false
}

// configValue is one resolved config: its value and where it came from.
type configValue struct {
	def    *topicConfigDef
	value  string
	source kmsg.ConfigSource
}

// resolveTopicConfigs resolves every known config for a topic with the given
// overrides, in name order.
func resolveTopicConfigs(overrides, brokerDefaults map[string]string) []configValue {
	out := make([]configValue, 0, len(topicConfigDefs))
	for i := range topicConfigDefs {
		d := &topicConfigDefs[i]
		cv := configValue{def: d, value: d.def, source: kmsg.ConfigSourceDefaultConfig}
		if v, ok := brokerDefaults[d.name]; ok {
			cv.value, cv.source = v, kmsg.ConfigSourceStaticBrokerConfig
		}
		if v, ok := overrides[d.name]; ok {
			cv.value, cv.source = v, kmsg.ConfigSourceDynamicTopicConfig
		}
		out = append(out, cv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].def.name < out[j].def.name })
	return out
}

// topicLogConfig turns resolved topic configs into the log engine's Config.
func topicLogConfig(overrides, brokerDefaults map[string]string) vlog.Config {
	get := func(name string) string {
		if v, ok := overrides[name]; ok {
			return v
		}
		if v, ok := brokerDefaults[name]; ok {
			return v
		}
		return topicConfigIndex[name].def
	}
	num := func(name string) int64 {
		v, _ := strconv.ParseInt(get(name), 10, 64) // values are checked on the way in
		return v
	}
	ms := func(name string) time.Duration {
		v := num(name)
		if v < 0 {
			return -1
		}
		if v > int64(math.MaxInt64/time.Millisecond) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(v) * time.Millisecond
	}
	cfg := vlog.Config{
		SegmentBytes:       num("segment.bytes"),
		SegmentMs:          ms("segment.ms"),
		RetentionBytes:     num("retention.bytes"),
		RetentionMs:        ms("retention.ms"),
		FlushMessages:      num("flush.messages"),
		FlushMs:            ms("flush.ms"),
		MaxMessageBytes:    int(num("max.message.bytes")),
		LogAppendTime:      get("message.timestamp.type") == "LogAppendTime",
		IndexIntervalBytes: int(num("index.interval.bytes")),
		SegmentIndexBytes:  int(num("segment.index.bytes")),

		Compact:          hasPolicy(get("cleanup.policy"), "compact"),
		DeleteRetention:  ms("delete.retention.ms"),
		MinCompactionLag: ms("min.compaction.lag.ms"),
		MaxCompactionLag: ms("max.compaction.lag.ms"),
	}
	cfg.MinCleanableDirtyRatio, _ = strconv.ParseFloat(get("min.cleanable.dirty.ratio"), 64)
	if !hasPolicy(get("cleanup.policy"), "delete") {
		// A compact-only topic keeps its data until the cleaner removes
		// superseded records; retention never deletes whole segments.
		cfg.RetentionMs, cfg.RetentionBytes = -1, -1
	}
	return cfg
}

// minInsyncReplicas returns the topic's effective min.insync.replicas.
func minInsyncReplicas(overrides, brokerDefaults map[string]string) int {
	for _, m := range []map[string]string{overrides, brokerDefaults} {
		if v, ok := m["min.insync.replicas"]; ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 1
}
