package broker

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestCreateTopicsValidation(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	ctx := testCtx(t)

	// validate_only creates nothing.
	vr, err := adm.ValidateCreateTopics(ctx, 3, 1, nil, "validated")
	if err != nil || vr["validated"].Err != nil {
		t.Fatalf("validate: %v %v", err, vr["validated"].Err)
	}
	if vr["validated"].NumPartitions != 3 {
		t.Fatalf("validate-only reported %d partitions, want 3", vr["validated"].NumPartitions)
	}
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has("validated") {
		t.Fatal("validate_only created the topic")
	}

	bad := "bogus"
	cases := []struct {
		name       string
		topic      string
		partitions int32
		rf         int16
		configs    map[string]*string
		want       error
	}{
		{"invalid name", "bad/name", 1, 1, nil, kerr.InvalidTopicException},
		{"dot name", "..", 1, 1, nil, kerr.InvalidTopicException},
		{"too long", string(make([]byte, 250)), 1, 1, nil, kerr.InvalidTopicException},
		{"zero partitions", "zp", 0, 1, nil, kerr.InvalidPartitions},
		{"replication too high", "rf", 1, 3, nil, kerr.InvalidReplicationFactor},
		{"unknown config", "uc", 1, 1, map[string]*string{"no.such.config": &bad}, kerr.InvalidConfig},
		{"bad value", "bv", 1, 1, map[string]*string{"retention.ms": &bad}, kerr.InvalidConfig},
		{"bad enum", "be", 1, 1, map[string]*string{"message.timestamp.type": &bad}, kerr.InvalidConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := adm.CreateTopics(ctx, c.partitions, c.rf, c.configs, c.topic)
			if err != nil {
				t.Fatal(err)
			}
			r := resp[c.topic]
			if !errors.Is(r.Err, c.want) {
				t.Fatalf("got %v, want %v", r.Err, c.want)
			}
			if r.ErrMessage == "" {
				t.Fatalf("error %v carries no message for the user", r.Err)
			}
		})
	}

	createTopic(t, adm, "dup", 1, nil)
	resp, err := adm.CreateTopics(ctx, 1, 1, nil, "dup")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(resp["dup"].Err, kerr.TopicAlreadyExists) {
		t.Fatalf("duplicate create: %v", resp["dup"].Err)
	}
	createTopic(t, adm, "a.b", 1, nil)
	resp, _ = adm.CreateTopics(ctx, 1, 1, nil, "a_b")
	if !errors.Is(resp["a_b"].Err, kerr.InvalidTopicException) {
		t.Fatalf("colliding create: %v", resp["a_b"].Err)
	}
}

func TestMetadataTopicIDsAndAutoCreate(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.NumPartitions = 4 })
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "ids", 2, nil)
	md, err := adm.Metadata(ctx, "ids")
	if err != nil {
		t.Fatal(err)
	}
	td := md.Topics["ids"]
	if td.ID == (kadm.TopicID{}) || len(td.Partitions) != 2 || md.Cluster != b.ClusterID() {
		t.Fatalf("metadata: id %v partitions %d cluster %q", td.ID, len(td.Partitions), md.Cluster)
	}
	for _, p := range td.Partitions {
		if p.Leader != 0 || len(p.Replicas) != 1 || len(p.ISR) != 1 {
			t.Fatalf("partition %d: leader %d replicas %v isr %v", p.Partition, p.Leader, p.Replicas, p.ISR)
		}
	}

	// Producing to an unknown topic auto-creates it with num-partitions.
	cl := newClient(t, b, kgo.DefaultProduceTopic("auto"), kgo.AllowAutoTopicCreation())
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	md, err = adm.Metadata(ctx, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(md.Topics["auto"].Partitions); n != 4 {
		t.Fatalf("auto-created topic has %d partitions, want 4", n)
	}

	// Lookup by topic id (Metadata v12+).
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.TopicID = td.ID
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].Topic == nil || *resp.Topics[0].Topic != "ids" {
		t.Fatalf("lookup by id: %+v", resp.Topics)
	}
}

func TestAutoCreateDisabled(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.AutoCreateTopics = false })
	cl := newClient(t, b)
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr("nope")
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = true
	resp, err := req.RequestWith(testCtx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("got error %d, want UNKNOWN_TOPIC_OR_PARTITION", resp.Topics[0].ErrorCode)
	}
}

func TestDeleteTopicsByNameAndID(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	cl := newClient(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "byname", 2, nil)
	createTopic(t, adm, "byid", 1, nil)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "byname", Value: []byte("old")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dr, err := adm.DeleteTopics(ctx, "byname", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if dr["byname"].Err != nil || !errors.Is(dr["missing"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete by name: %v / %v", dr["byname"].Err, dr["missing"].Err)
	}
	md, _ := adm.Metadata(ctx, "byid")
	req := kmsg.NewPtrDeleteTopicsRequest()
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.TopicID = md.Topics["byid"].ID
	req.Topics = append(req.Topics, dt)
	bogus := kmsg.NewDeleteTopicsRequestTopic()
	bogus.TopicID = [16]byte{1, 2, 3}
	req.Topics = append(req.Topics, bogus)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Topics[0].ErrorCode != 0 || resp.Topics[0].Topic == nil || *resp.Topics[0].Topic != "byid" {
		t.Fatalf("delete by id: %+v", resp.Topics[0])
	}
	if resp.Topics[1].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("delete unknown id: error %d", resp.Topics[1].ErrorCode)
	}
	topics, _ := adm.ListTopics(ctx)
	if topics.Has("byname") || topics.Has("byid") {
		t.Fatalf("topics still listed after delete: %v", topics.Names())
	}
	// A new topic with the old name starts empty.
	createTopic(t, adm, "byname", 1, nil)
	ends, err := adm.ListEndOffsets(ctx, "byname")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup("byname", 0); o.Offset != 0 {
		t.Fatalf("recreated topic has end offset %d, want 0", o.Offset)
	}
}

func TestCreatePartitions(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "grow", 1, nil)
	r, err := adm.ValidateCreatePartitions(ctx, 2, "grow")
	if err != nil || r["grow"].Err != nil {
		t.Fatalf("validate: %v %v", err, r["grow"].Err)
	}
	r, err = adm.CreatePartitions(ctx, 2, "grow")
	if err != nil || r["grow"].Err != nil {
		t.Fatalf("create partitions: %v %v", err, r["grow"].Err)
	}
	md, _ := adm.Metadata(ctx, "grow")
	if n := len(md.Topics["grow"].Partitions); n != 3 {
		t.Fatalf("%d partitions after adding 2 to 1", n)
	}
	r, _ = adm.UpdatePartitions(ctx, 2, "grow")
	if !errors.Is(r["grow"].Err, kerr.InvalidPartitions) {
		t.Fatalf("shrinking: %v", r["grow"].Err)
	}
	r, _ = adm.CreatePartitions(ctx, 1, "nosuch")
	if !errors.Is(r["nosuch"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("unknown topic: %v", r["nosuch"].Err)
	}
	cl := newClient(t, b)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "grow", Partition: 2, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("producing to a new partition: %v", err)
	}
}

func TestConfigs(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.TopicDefaults = map[string]string{"retention.bytes": "12345"} })
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	hour := "3600000"
	createTopic(t, adm, "cfg", 1, map[string]*string{"retention.ms": &hour})

	describe := func() map[string]*kadm.Config {
		t.Helper()
		rc, err := adm.DescribeTopicConfigs(ctx, "cfg")
		if err != nil {
			t.Fatal(err)
		}
		r, err := rc.On("cfg", nil)
		if err != nil || r.Err != nil {
			t.Fatalf("describe: %v %v", err, r.Err)
		}
		m := map[string]*kadm.Config{}
		for i := range r.Configs {
			m[r.Configs[i].Key] = &r.Configs[i]
		}
		return m
	}
	m := describe()
	if c := m["retention.ms"]; c.MaybeValue() != hour || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("retention.ms: %q source %v", c.MaybeValue(), c.Source)
	}
	if c := m["retention.bytes"]; c.MaybeValue() != "12345" || c.Source != kmsg.ConfigSourceStaticBrokerConfig {
		t.Fatalf("retention.bytes: %q source %v", c.MaybeValue(), c.Source)
	}
	if c := m["segment.bytes"]; c.MaybeValue() != "1073741824" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("segment.bytes: %q source %v", c.MaybeValue(), c.Source)
	}
	if len(m["retention.ms"].Synonyms) == 0 {
		t.Fatal("no synonyms reported")
	}

	// Incremental: set, delete, append to a list.
	day := "86400000"
	compact := "compact"
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "segment.ms", Value: &day},
		{Op: kadm.DeleteConfig, Name: "retention.ms"},
		{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: &compact},
	}, "cfg")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("incremental alter: %v %+v", err, ar)
	}
	m = describe()
	if m["segment.ms"].MaybeValue() != day || m["retention.ms"].Source != kmsg.ConfigSourceDefaultConfig || m["cleanup.policy"].MaybeValue() != "delete,compact" {
		t.Fatalf("after incremental alter: segment.ms=%q retention.ms source %v cleanup.policy=%q",
			m["segment.ms"].MaybeValue(), m["retention.ms"].Source, m["cleanup.policy"].MaybeValue())
	}

	// Bad input: unknown config, bad value, append to a non-list.
	bad := "-5"
	for _, ac := range []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "no.such", Value: &day},
		{Op: kadm.SetConfig, Name: "segment.bytes", Value: &bad},
		{Op: kadm.AppendConfig, Name: "retention.ms", Value: &day},
	} {
		ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{ac}, "cfg")
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(ar[0].Err, kerr.InvalidConfig) || ar[0].ErrMessage == "" {
			t.Fatalf("%s %s: got %v %q, want INVALID_CONFIG with a message", ac.Name, *ac.Value, ar[0].Err, ar[0].ErrMessage)
		}
	}

	// Legacy AlterConfigs replaces all overrides.
	lat := "LogAppendTime"
	ar, err = adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "message.timestamp.type", Value: &lat}}, "cfg")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("alter state: %v %+v", err, ar)
	}
	m = describe()
	if m["message.timestamp.type"].MaybeValue() != lat || m["segment.ms"].Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("after AlterConfigs: %q, segment.ms source %v", m["message.timestamp.type"].MaybeValue(), m["segment.ms"].Source)
	}

	// Broker configs are described and read-only.
	bc, err := adm.DescribeBrokerConfigs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range bc[0].Configs {
		if c.Key == "log.retention.bytes" && c.MaybeValue() == "12345" {
			found = true
		}
	}
	if !found {
		t.Fatalf("broker configs lack log.retention.bytes=12345: %+v", bc[0].Configs)
	}
	abr, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "log.retention.ms", Value: &day}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(abr[0].Err, kerr.InvalidRequest) {
		t.Fatalf("altering broker config: %v", abr[0].Err)
	}
}

func TestListOffsetsAndDeleteRecords(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "lo", 1, nil)
	cl := newClient(t, b, kgo.DefaultProduceTopic("lo"), kgo.ProducerLinger(0))
	base := time.UnixMilli(1_700_000_000_000)
	// Ten batches, timestamps base+0s..base+9s, except the 6th is the max.
	for i := 0; i < 10; i++ {
		ts := base.Add(time.Duration(i) * time.Second)
		if i == 5 {
			ts = base.Add(time.Hour)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i)), Timestamp: ts}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, lo kadm.ListedOffsets, err error, want int64) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		o, ok := lo.Lookup("lo", 0)
		if !ok || o.Err != nil || o.Offset != want {
			t.Fatalf("%s: offset %d err %v, want %d", what, o.Offset, o.Err, want)
		}
	}
	lo, err := adm.ListStartOffsets(ctx, "lo")
	check("earliest", lo, err, 0)
	lo, err = adm.ListEndOffsets(ctx, "lo")
	check("latest", lo, err, 10)
	lo, err = adm.ListOffsetsAfterMilli(ctx, base.Add(3*time.Second).UnixMilli(), "lo")
	check("by timestamp", lo, err, 3)
	lo, err = adm.ListOffsetsAfterMilli(ctx, base.Add(2*time.Hour).UnixMilli(), "lo")
	check("after the newest timestamp", lo, err, 10) // kadm maps "none" to the end offset
	lo, err = adm.ListMaxTimestampOffsets(ctx, "lo")
	check("max timestamp", lo, err, 5)

	dr, err := adm.DeleteRecords(ctx, kadm.Offsets{"lo": {0: {At: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup("lo", 0); r.Err != nil || r.LowWatermark != 4 {
		t.Fatalf("delete records: %+v", r)
	}
	lo, err = adm.ListStartOffsets(ctx, "lo")
	check("earliest after delete", lo, err, 4)
	dr, _ = adm.DeleteRecords(ctx, kadm.Offsets{"lo": {0: {At: 99}}})
	if r, _ := dr.Lookup("lo", 0); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete beyond the end: %v", r.Err)
	}

	// Fetching below the new start is out of range; consumers reset.
	fr := kmsg.NewPtrFetchRequest()
	fr.MaxWaitMillis, fr.MinBytes, fr.MaxBytes = 0, 1, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = "lo", b.meta.lookup("lo").id
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset, fp.PartitionMaxBytes = 1, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	fr.Topics = append(fr.Topics, ft)
	fresp, err := fr.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	p := fresp.Topics[0].Partitions[0]
	if p.ErrorCode != kerr.OffsetOutOfRange.Code || p.LogStartOffset != 4 || p.HighWatermark != 10 {
		t.Fatalf("fetch below start: error %d start %d hw %d", p.ErrorCode, p.LogStartOffset, p.HighWatermark)
	}
}

func TestOffsetForLeaderEpochAndClusterAPIs(t *testing.T) {
	b := startBroker(t, "")
	adm := newAdmin(t, b)
	ctx := testCtx(t)
	createTopic(t, adm, "ep", 1, nil)
	cl := newClient(t, b, kgo.DefaultProduceTopic("ep"))
	var recs []*kgo.Record
	for i := 0; i < 7; i++ {
		recs = append(recs, &kgo.Record{Value: []byte(fmt.Sprint(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ofe, err := adm.OffsetForLeaderEpoch(ctx, kadm.OffsetForLeaderEpochRequest{"ep": {0: 0}})
	if err != nil {
		t.Fatal(err)
	}
	r := ofe["ep"][0]
	if r.Err != nil || r.LeaderEpoch != 0 || r.EndOffset != 7 {
		t.Fatalf("offset for leader epoch: %+v", r)
	}
	// A client that believes in a newer leader epoch is told so.
	oreq := kmsg.NewPtrOffsetForLeaderEpochRequest()
	ot := kmsg.NewOffsetForLeaderEpochRequestTopic()
	ot.Topic = "ep"
	op := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
	op.CurrentLeaderEpoch, op.LeaderEpoch = 5, 0
	ot.Partitions = append(ot.Partitions, op)
	oreq.Topics = append(oreq.Topics, ot)
	oresp, err := oreq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := oresp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownLeaderEpoch.Code {
		t.Fatalf("future current epoch: error %d, want UNKNOWN_LEADER_EPOCH", code)
	}

	dc := kmsg.NewPtrDescribeClusterRequest()
	dcr, err := dc.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if dcr.ErrorCode != 0 || dcr.ClusterID != b.ClusterID() || len(dcr.Brokers) != 1 {
		t.Fatalf("describe cluster: %+v", dcr)
	}

	dirs, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	dirs.Each(func(d kadm.DescribedLogDir) {
		if p, ok := d.Topics["ep"][0]; ok {
			size = p.Size
		}
	})
	if size <= 0 {
		t.Fatalf("log dir size of ep-0 is %d", size)
	}

	dp, err := adm.DescribeProducers(ctx, kadm.TopicsSet{"ep": {0: struct{}{}}})
	if err != nil {
		t.Fatal(err)
	}
	var producers int
	dp.EachPartition(func(p kadm.DescribedProducersPartition) {
		if p.Err != nil {
			t.Fatalf("describe producers: %v", p.Err)
		}
		for _, ap := range p.ActiveProducers {
			producers++
			if ap.LastSequence != 6 {
				t.Fatalf("producer %d last sequence %d, want 6", ap.ProducerID, ap.LastSequence)
			}
		}
	})
	if producers != 1 {
		t.Fatalf("%d active producers, want 1", producers)
	}
}
