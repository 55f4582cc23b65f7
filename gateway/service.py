"""The gateway process: storage, pipeline, MQTT ingest and the HTTP server together."""

import logging
import time
from pathlib import Path

import uvicorn

from .api import create_app
from .availability import Limits
from .config import host_port
from .identity import Trust
from .ingest import Ingest
from .pipeline import Pipeline
from .roads import RoadMap
from .statuses import load_schemes
from .store import Store
from .stream import Hub

log = logging.getLogger("siaga.gateway")


class Gateway:
    def __init__(self, settings, clock=time.time):
        self.settings = settings
        self.clock = clock
        self.store = Store(Path(settings["data"]) / "siaga.db")
        schemes = load_schemes(settings["status_scheme"], settings["status_schemes"])
        limits = Limits(settings["offline_after"], settings["position_stale_after"])
        self.hub = Hub()
        trust = Trust(settings["max_clock_ahead"], settings["max_boot_step"], settings["max_seq_step"])
        self.pipeline = Pipeline(self.store, schemes, limits, on_change=self._changed, trust=trust)
        host, port = host_port(settings["mqtt"], 1883)
        self.ingest = Ingest(
            self.pipeline,
            host,
            port,
            client_id=settings["mqtt_client_id"],
            retention_s=settings["retention_days"] * 86400,
            username=settings["mqtt_user"] or None,
            password=settings["mqtt_password"] or None,
            ca=settings["mqtt_ca"] or None,
            clock=clock,
            stall_after=settings["ingest_stall_after"],
        )
        self.roads = RoadMap(Path(settings["data"]) / "map" / "roads.graph")
        _, why = self.roads.current()  # read at start; again whenever `siaga map import` replaces it
        log.info("road map: %s", why or "drive times by road")
        self.app = create_app(self)

    def _changed(self, view):
        row = self.pipeline.registry.get(view["unit_id"], {})
        self.hub.publish({"callsign": row.get("callsign"), "kind": row.get("kind"), **view})

    def run(self):
        self.ingest.start()
        config = uvicorn.Config(
            self.app,
            host=self.settings["http_host"],
            port=self.settings["http"],
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,  # live streams never end by themselves
        )
        server = uvicorn.Server(config)
        log.info("HTTP API on http://%s:%s/api/v1/units", self.settings["http_host"], self.settings["http"])
        try:
            server.run()
        finally:
            self.ingest.stop()
