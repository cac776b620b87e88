// Package broker is a Vigil broker: the Kafka wire protocol server that
// standard Kafka clients (franz-go, librdkafka/kcat, kafka-python, sarama,
// kafka-go, the Java client) use unchanged, on top of the partition log
// engine in broker/log.
//
// Every request and response is encoded and decoded by
// github.com/twmb/franz-go/pkg/kmsg; this package parses only the request
// header. One goroutine serves each connection: it reads a request, handles
// it and writes its response before reading the next, so responses leave in
// request order, as Kafka requires, without a goroutine handoff per request.
//
// The broker advertises exactly the APIs and version ranges in apiVersions
// (see versions.go); a request for another API or version closes the
// connection with a log line, except ApiVersions, which answers with
// UNSUPPORTED_VERSION and the supported ranges at version 0 so that clients
// can negotiate (KIP-511).
//
// Until the metadata quorum exists (see the controller package), a broker is
// a single-node cluster: it leads every partition, its topic metadata lives
// in a file in its data directory, and acks=all means "persisted on this
// broker according to the topic's flush policy" (see docs/durability.md).
package broker
