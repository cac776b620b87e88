package group

import (
	"testing"
	"time"
)

// FuzzReplay feeds arbitrary records to Replay, as a corrupt or foreign
// __consumer_offsets partition would: it must return an error or skip the
// record, never panic, and the coordinator must still start and answer.
func FuzzReplay(f *testing.F) {
	// Seeds: the records a real coordinator writes.
	for _, r := range seedRecords() {
		f.Add(r.Key, r.Value)
	}
	f.Add([]byte{0, 1}, []byte{0, 3, 1})
	f.Add([]byte{0, 100, 0, 1, 'g'}, []byte(`{"version":1,"members":[{"id":"m","assigned":{"t":[0]}}]}`))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		c := New(testConfig(), 0)
		_ = c.Replay(key, value)
		if len(value) > 0 {
			_ = c.Replay(key, nil) // and its tombstone
			_ = c.Replay(key, value)
		}
		now := time.Unix(1_700_000_000, 0)
		c.Start(now)
		c.ListGroups(nil, nil)
		for id := range c.groups {
			c.DescribeGroup(id, 6)
			c.ConsumerGroupDescribe(id, fakeTopics{"t": 1})
			c.OffsetFetch(id, nil, nil, -1)
		}
		c.Tick(now.Add(time.Hour))
	})
}

// seedRecords returns records of every kind the coordinator writes.
func seedRecords() []Record {
	now := time.Unix(1_700_000_000, 0)
	g := &group{id: "g", protocolType: "consumer", protocol: "range", generation: 3, leader: "m1",
		members: map[string]*member{"m1": {id: "m1", clientID: "c", protocols: nil, assignment: []byte{1, 2}}}}
	o := &offset{offset: 42, leaderEpoch: 1, metadata: "md", committed: now}
	cg := &group{id: "cg", consumer: newConsumerGroup(now)}
	cg.consumer.members["x"] = &cmember{id: "x", epoch: 2, topics: []string{"t"}, assigned: map[string][]int32{"t": {0}}}
	return []Record{g.metadataRecord(now), offsetRecord("g", "t", 0, o), offsetTombstone("g", "t", 0), consumerGroupRecord(cg, now)}
}
