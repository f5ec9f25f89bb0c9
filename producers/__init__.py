"""Device SDK and fleet simulator (kafka-python); imports contracts."""
