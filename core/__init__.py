"""The bottom layer beside contracts/: settings from the environment, how Kafka clients
connect, and the /metrics server. It imports nothing of frtwatch's but contracts/."""
