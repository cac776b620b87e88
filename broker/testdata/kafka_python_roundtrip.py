"""Round trip through kafka-python (Debian's python3-kafka 2.0): create a
topic, produce keyed records with headers (acks=all, gzip), read them back
by assigned partitions, and print them as JSON lines for the Go test."""
import json
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

admin = KafkaAdminClient(bootstrap_servers=bootstrap)
admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
admin.close()

producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
for i in range(count):
    producer.send(topic, key=b"key-%d" % i, value=("value-%d-" % i).encode() + bytes(range(i % 256)),
                  headers=[("n", str(i).encode())])
producer.flush()
producer.close()

consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, consumer_timeout_ms=10000)
consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
seen = 0
for m in consumer:
    print(json.dumps({"key": m.key.decode(), "value": m.value.hex(),
                      "headers": [[k, v.decode()] for k, v in m.headers]}))
    seen += 1
    if seen == count:
        break
consumer.close()
