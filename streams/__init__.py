"""The Kafka shell: topics and keys, settings, the replay producer, the
worker daemon and its checkpoints. Imports kafka-python only where a
client is made, so the pure parts (topics, settings, checkpoint encoding,
the merge) load without it."""
