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
// A broker takes its metadata from the controller quorum (package
// controller): it registers, heartbeats and follows the metadata image
// (link.go); the image decides which partitions it holds replicas of and
// which it leads (meta.go, roles.go). Leaders track their followers and the
// high watermark and answer acks=all once the ISR has a write
// (replication.go); followers fetch from their leaders with the Kafka
// protocol (fetcher.go). Topic administration is forwarded to the quorum
// (topics.go, configs.go). With no controllers configured, a broker runs a
// single-node quorum in its own process (combined mode). What an
// acknowledgement promises is in docs/durability.md.
package broker
