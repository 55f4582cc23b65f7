"""The gateway process: storage, pipeline, MQTT ingest and the HTTP server together."""

import logging
import socket
import time
from pathlib import Path

import uvicorn

from .api import create_app
from .availability import Limits
from .config import host_ports
from .identity import Trust
from .ingest import Ingest
from .pipeline import Pipeline
from .roads import RoadMap
from .statuses import load_schemes
from .store import open_store
from .stream import Hub

log = logging.getLogger("siaga.gateway")


class Gateway:
    def __init__(self, settings, clock=time.time):
        self.settings = settings
        self.clock = clock
        self.instance = settings.get("instance") or f"{socket.gethostname()}:{settings['http']}"
        self.store = open_store(settings["data"], settings.get("database_url", ""), self.instance)
        schemes = load_schemes(settings["status_scheme"], settings["status_schemes"])
        limits = Limits(settings["offline_after"], settings["position_stale_after"])
        self.hub = Hub()
        trust = Trust(settings["max_clock_ahead"], settings["max_boot_step"], settings["max_seq_step"])
        self.pipeline = Pipeline(self.store, schemes, limits, on_change=self._changed, trust=trust)
        (host, port), *more = host_ports(settings["mqtt"], 1883)
        self.ingest = Ingest(
            self.pipeline,
            host,
            port,
            client_id=settings["mqtt_client_id"],
            more_brokers=more,
            retention_s=settings["retention_days"] * 86400,
            username=settings["mqtt_user"] or None,
            password=settings["mqtt_password"] or None,
            ca=settings["mqtt_ca"] or None,
            clock=clock,
            stall_after=settings["ingest_stall_after"],
            leading=not self.store.shared,  # several gateways on one database: the lock decides
            instance=self.instance,
        )
        self.leadership = self.notifications = None
        if self.store.shared:
            from .leadership import Leadership
            from .notifications import Notifications

            url = settings["database_url"]
            self.leadership = Leadership(url, self.instance, self.ingest.lead, self.ingest.follow)
            known = self.pipeline.versions.get
            self.notifications = Notifications(
                url, self.instance, self.ingest.offer_change, lambda unit: known(unit, 0)
            )
        self.roads = RoadMap(Path(settings["data"]) / "map" / "roads.graph")
        _, why = self.roads.current()  # read at start; again whenever `siaga map import` replaces it
        log.info("road map: %s", why or "drive times by road")
        self.app = create_app(self)

    def _changed(self, view):
        row = self.pipeline.registry.get(view["unit_id"], {})
        self.hub.publish({"callsign": row.get("callsign"), "kind": row.get("kind"), **view})

    def role(self):
        """This gateway's part: leader (ingests), standby, and who leads, for /health."""
        if self.leadership is None:
            return {"role": "leader", "leader": self.instance, "database": self.store.describe()}
        return {
            **self.leadership.health(),
            "instance": self.instance,
            "notifications": self.notifications.health(),
            "database": self.store.describe(),
        }

    def run(self):
        self.ingest.start()
        for part in (self.leadership, self.notifications):
            if part is not None:
                part.start()
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
            for part in (self.notifications, self.leadership):
                if part is not None:
                    part.stop()
            self.ingest.stop()
            self.store.close()
