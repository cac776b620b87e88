// Package bench is the load generator behind `vigil bench`. It drives any
// Kafka-compatible cluster (Vigil, Apache Kafka, ...) through the franz-go
// client only, so its numbers are what an ordinary client sees.
//
// # Modes
//
//	vigil bench produce --brokers HOST:PORT [flags]
//	vigil bench consume --brokers HOST:PORT [flags]
//	vigil bench e2e     --brokers HOST:PORT --rate N [flags]
//
// What each mode does:
//
//   - produce: --producers clients (each its own kgo.Client, so its own
//     connections) write --record-size-byte records with no key to --topic,
//     as fast as possible or at --rate. Reports throughput and produce
//     latency: from the Produce call to the record's promise (the
//     acknowledgement, or for acks=0 the write to the socket). In a run
//     without --rate the client buffer is full, so produce latency includes
//     the time records queue in it (about --max-buffered-records divided by
//     the throughput); use --rate for latency below saturation.
//   - consume: --consumers clients read every partition from its start
//     offset up to the end offset (high watermark) listed when the run
//     began, then stop; --records or an explicit --duration stop earlier.
//     The topic must hold data: --produce-first N writes N records first,
//     with the produce flags (not measured). Partitions are assigned
//     directly (no consumer group, nothing committed), split round-robin.
//   - e2e: consumers start at the current end of every partition; then the
//     producers send at a fixed --rate (required), each record stamped with
//     the run, the producer, a per-producer sequence number and the send
//     time. Consumers measure end-to-end latency (receive time minus the
//     stamped send time; both wall clocks, so run producers and consumers on
//     one host or on hosts with synchronised clocks) and record every
//     sequence number they see. When the producers are done, the consumers
//     read until they reach each partition's last acknowledged offset (and
//     the high watermark), bounded by --drain-timeout. The delivery check then
//     reports missing (acknowledged but never read) and duplicate records,
//     and offset gaps within each partition.
//
// The topic is created with kadm (--partitions, --replication-factor) if it
// does not exist; an existing topic is used as it is.
//
// # Timing
//
// A run lasts --warmup, then the measured phase: --duration (default 10s), or
// until --records measured records, whichever comes first (--records alone
// drops the default duration). Records sent during the warmup are excluded
// from counts, throughput and latency, but e2e still checks them for loss
// and duplication. Throughput is measured from the end of the warmup to the
// last acknowledgement (produce) or the last measured record read (consume).
//
// --rate is paced by a token bucket on an absolute schedule (record k of a
// producer is due at start + k/rate), so pacing does not drift however late
// a goroutine wakes; a producer stalled for more than 10ms does not burst to
// catch up but drops the missed slots, which shows as a lower achieved rate.
// The rate is split evenly between the producers.
//
// # Flags
//
//	--brokers HOST:PORT,...    seed brokers (default 127.0.0.1:9092)
//	--topic NAME               topic (default vigil-bench)
//	--partitions N             partitions when creating the topic (default 6)
//	--replication-factor N     replication factor when creating it (default 1)
//	--producers N              producer clients (default 4)
//	--consumers N              consumer clients, at most one per partition (default 1)
//	--record-size BYTES        value size (default 1024; e2e needs >= 32)
//	--acks all|1|0             all enables the idempotent producer; 1 and 0
//	                           disable idempotence, as franz-go requires (default all)
//	--compression C            none, gzip, snappy, lz4 or zstd (default none)
//	--linger D                 producer linger (default 0: send at once)
//	--batch-max-bytes N        max batch size (default 1 MiB; keep it <= the
//	                           broker's max.message.bytes)
//	--max-buffered-records N   records a producer may buffer (default 8 MiB worth)
//	--duration D               measured phase (default 10s; consume: to the end)
//	--records N                stop after N measured records
//	--rate R                   records/s across all producers (0: unlimited; e2e: required)
//	--warmup D                 unmeasured lead-in (default 0)
//	--produce-first N          consume: write N records first
//	--drain-timeout D          e2e: wait this long for consumers to catch up;
//	                           consume: stop after this long without records (default 30s)
//	--broker-pid PID           report broker CPU from /proc/PID/stat
//	--broker-metrics URL       else, from process_cpu_seconds_total at URL
//	--progress D               progress line on stderr every D (default 1s; 0 off;
//	                           off with --json unless given)
//	--client-telemetry         let the clients push KIP-714 client metrics, as
//	                           franz-go does by default (default off: numbers
//	                           exclude telemetry)
//	--gogc N                   the clients' Go GC target percent (default $GOGC
//	                           if set, else 400; see DefaultGOGC)
//	--json                     print one JSON object instead of the text summary
//
// Record values are random uppercase letters (like kafka-producer-perf-test's),
// from a fixed seed, so compression ratios are realistic and repeatable.
//
// # Units
//
// Bytes are record payload bytes (key + value; no headers, batch or protocol
// overhead). MB = 10^6 bytes and GB = 10^9 bytes (not MiB/GiB). Latencies
// are reported in milliseconds.
//
// # Broker CPU-seconds per GB
//
// With --broker-pid PID (a broker on this host), the broker's utime+stime
// from /proc/PID/stat is read at the start of the measured phase and at its
// end and converted from clock ticks with the kernel's USER_HZ (AT_CLKTCK
// from the auxiliary vector, normally 100). Without --broker-pid but with
// --broker-metrics URL, process_cpu_seconds_total is scraped from that
// Prometheus text endpoint instead (summed if it has several series). Then
//
//	cpu_seconds        = end - start
//	bytes_moved        = produced bytes + consumed bytes in the measured phase
//	cpu_seconds_per_gb = cpu_seconds / (bytes_moved / 10^9)
//
// The group benchmark moves no payload: it reports the broker's CPU seconds
// over the whole run (joins, rebalances and commits) and no per-GB figure.
//
// so in e2e mode a byte written and read once counts twice. The end sample
// is taken after the last acknowledgement (produce) or the end of the drain
// (e2e), so it includes the broker's work on in-flight data. With neither
// flag the broker_cpu field is omitted. A failing first sample stops the run
// (it is almost always a wrong PID or URL); a failing last one becomes a
// warning.
//
// # JSON output
//
// With --json, stdout is a single JSON object on one line. Field names are
// stable; sections that do not apply to the mode are omitted.
//
//	mode                 "produce", "consume" or "e2e"
//	config               the effective settings:
//	  brokers, topic, partitions (actual count), replication_factor,
//	  producers, consumers (clients actually used; 0 for a side the mode
//	  does not run), record_size, acks ("all", "1", "0"), idempotent,
//	  compression, linger_ms, batch_max_bytes, target_rate (0: unlimited),
//	  duration_seconds (0: none), target_records (0: none), warmup_seconds,
//	  client_telemetry, gogc (the clients' GC target, omitted if not set)
//	produce              (produce, e2e) a stage:
//	  records            acknowledged records sent in the measured phase
//	  bytes              their payload bytes
//	  elapsed_seconds    end of warmup to the last acknowledgement
//	  records_per_sec    records / elapsed_seconds
//	  mb_per_sec         bytes / 10^6 / elapsed_seconds
//	  errors             records whose produce failed (warmup included)
//	  first_error        the first such error, if any
//	  latency_ms         produce latency (see below)
//	consume              (consume, e2e) a stage like produce, without
//	                     latency_ms: records and bytes read in the measured
//	                     phase (e2e: records sent in it), elapsed_seconds to
//	                     the last of them, errors are fetch errors
//	e2e                  (e2e)
//	  latency_ms         end-to-end latency of measured records
//	  expected           records sent and not failed (warmup included)
//	  received           distinct expected records read
//	  missing            expected - received
//	  duplicates         records read more than once
//	  offset_gaps        offsets skipped within partitions (0 on a healthy
//	                     broker without transactions or compaction)
//	  foreign            records on the topic not written by this run (ignored)
//	  drained            false if --drain-timeout expired first
//	broker_cpu           (with --broker-pid or --broker-metrics)
//	  source             "proc:PID" or "prometheus:URL"
//	  cpu_seconds, bytes_moved, cpu_seconds_per_gb   as above
//	host                 the machine over the measured phase (Linux, /proc)
//	  cpus               CPUs the kernel reports
//	  busy, iowait, steal, idle   shares (0-1) of all CPUs' time; steal is
//	                     what the hypervisor took
//	  dirty_mb_start, dirty_mb_end   dirty page cache at the start and end
//	  written_back_mb    page cache the kernel wrote out meanwhile
//	warnings             problems that did not stop the run (omitted if none)
//
// A latency_ms object has count, min, mean, p50, p90, p99, p99_9 and max,
// in milliseconds. Percentiles come from a log-linear (HDR-style) histogram
// with at most 1/128 relative bucket width: a reported percentile is within
// 0.4% of the true nearest-rank value; min, max and mean are exact.
//
// # Go API
//
// [Run] is the whole command (parsing, running, printing). [Produce],
// [Consume] and [E2E] take a [Config] (start from [DefaultConfig]; zero fields
// mean their defaults) and return a [Result], whose JSON encoding is the
// output above. Extra franz-go options (TLS, SASL) go in Config.ClientOpts.
//
// On the client side, values are pre-built (produce) or pooled and re-stamped
// in place (e2e), records are pooled, and there is no allocation or lock per
// record in the benchmark's own code, so the client's CPU goes to franz-go.
package bench
