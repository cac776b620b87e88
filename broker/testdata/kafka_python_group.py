"""Consume exactly `count` records of `topic` in consumer group `group` with
kafka-python (Debian's python3-kafka 2.0), committing synchronously after
each poll, and print each value on a line for the Go test."""
import sys

from kafka import KafkaConsumer

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         session_timeout_ms=10000, heartbeat_interval_ms=500)
seen = 0
while seen < count:
    batches = consumer.poll(timeout_ms=1000)
    for records in batches.values():
        for m in records:
            print(m.value.decode())
            seen += 1
    if batches:
        consumer.commit()
consumer.close()
