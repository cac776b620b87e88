"""Consume partition 0 of a topic from the beginning with kafka-python
(Debian's python3-kafka 2.0) and print count records as JSON lines (key,
value or null, offset) for the Go test."""
import json
import sys

from kafka import KafkaConsumer, TopicPartition

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, consumer_timeout_ms=20000)
consumer.assign([TopicPartition(topic, 0)])
seen = 0
for m in consumer:
    print(json.dumps({"key": m.key.decode(), "value": None if m.value is None else m.value.decode(),
                      "offset": m.offset}))
    seen += 1
    if seen == count:
        break
consumer.close()
