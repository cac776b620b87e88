package broker

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// versionRange is the inclusive range of versions implemented for one API.
type versionRange struct{ min, max int16 }

// apiVersions lists every API this broker implements and the versions it
// answers. Produce and Fetch start at the first version that carries v2
// record batches (Kafka 0.11); older message formats are not supported.
var apiVersions = map[int16]versionRange{
	kmsg.Produce.Int16():                 {3, 13},
	kmsg.Fetch.Int16():                   {4, 18},
	kmsg.ListOffsets.Int16():             {0, 10},
	kmsg.Metadata.Int16():                {0, 13},
	kmsg.ApiVersions.Int16():             {0, 4},
	kmsg.CreateTopics.Int16():            {0, 7},
	kmsg.DeleteTopics.Int16():            {0, 6},
	kmsg.DeleteRecords.Int16():           {0, 2},
	kmsg.InitProducerID.Int16():          {0, 5},
	kmsg.OffsetForLeaderEpoch.Int16():    {0, 4},
	kmsg.DescribeConfigs.Int16():         {0, 4},
	kmsg.AlterConfigs.Int16():            {0, 2},
	kmsg.DescribeLogDirs.Int16():         {0, 4},
	kmsg.CreatePartitions.Int16():        {0, 3},
	kmsg.IncrementalAlterConfigs.Int16(): {0, 1},
	kmsg.DescribeCluster.Int16():         {0, 2},
	kmsg.DescribeProducers.Int16():       {0, 0},

	kmsg.FindCoordinator.Int16():        {0, 6},
	kmsg.JoinGroup.Int16():              {0, 9},
	kmsg.SyncGroup.Int16():              {0, 5},
	kmsg.Heartbeat.Int16():              {0, 4},
	kmsg.LeaveGroup.Int16():             {0, 5},
	kmsg.OffsetCommit.Int16():           {0, 9},
	kmsg.OffsetFetch.Int16():            {0, 9},
	kmsg.OffsetDelete.Int16():           {0, 0},
	kmsg.DescribeGroups.Int16():         {0, 6},
	kmsg.ListGroups.Int16():             {0, 5},
	kmsg.DeleteGroups.Int16():           {0, 2},
	kmsg.ConsumerGroupHeartbeat.Int16(): {0, 1},
	kmsg.ConsumerGroupDescribe.Int16():  {0, 1},

	kmsg.ElectLeaders.Int16():               {0, 2},
	kmsg.AlterPartitionAssignments.Int16():  {0, 0},
	kmsg.ListPartitionReassignments.Int16(): {0, 0},

	kmsg.GetTelemetrySubscriptions.Int16(): {0, 0},
	kmsg.PushTelemetry.Int16():             {0, 0},
}

// apiVersionKeys is the ApiVersions response body, sorted by key.
var apiVersionKeys = func() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(apiVersions))
	for k, r := range apiVersions {
		keys = append(keys, kmsg.ApiVersionsResponseApiKey{ApiKey: k, MinVersion: r.min, MaxVersion: r.max})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ApiKey < keys[j].ApiKey })
	return keys
}()

// supported reports whether key at version is implemented.
func supported(key, version int16) bool {
	r, ok := apiVersions[key]
	return ok && version >= r.min && version <= r.max
}
