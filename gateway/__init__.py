"""Siaga gateway: MQTT ingest, availability, storage and the dispatchers' HTTP API."""

__version__ = "0.1.0"
