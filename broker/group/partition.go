package group

import "unicode/utf16"

// PartitionFor returns the __consumer_offsets partition of a group, as
// Kafka computes it: abs(Java String.hashCode(group)) mod n, so a group
// lands on the same partition number as it would in Apache Kafka.
func PartitionFor(group string, n int32) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	// Kafka's Utils.abs maps MinInt32 to 0 (h & 0x7fffffff).
	return (h & 0x7fffffff) % n
}
