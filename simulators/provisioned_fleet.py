"""The demo fleet on virtual boards on serial ports, each provisioned the way a technician
provisions a real unit (provisioning/provision.py): broker credentials and ACL, the
image with the project CA copied over mpremote and verified, the registry entry; then
the units log in over TLS as themselves."""

import random

from provisioning.provision import Provisioner

from .fleet import Crew, Fleet, supply_volts
from .vboard_serial import SerialBoard


class ProvisionedFleet(Fleet):
    """`broker`: a secure Mosquitto (provisioning/mosquitto.py, secure=True); `gateway`:
    a GatewayProcess (its API and token register the units)."""

    def __init__(self, specs, data_dir, broker, gateway, **kw):
        super().__init__(specs, data_dir, None, **kw)
        self.secure_broker = broker
        self.gateway = gateway

    def _board(self, spec):
        return SerialBoard(
            spec.unit_id,
            self.data_dir / "flash" / spec.unit_id,
            self.data_dir / "sim",
            start_xy=(spec.home.x, spec.home.y),
            seed=self.rng.random(),
            echo=self.echo,
            supply_v=supply_volts(self.rng),
            roads=self.roads,
        ).start()

    def _provision(self, spec, board):
        reg = spec.registration()
        Provisioner(
            spec.unit_id,
            board.port,
            "virtual",
            self.secure_broker.data_dir,
            self.gateway.url,
            kind=reg["kind"],
            callsign=reg["callsign"],
            agency=reg["agency"],
            token=self.gateway.token,
            replace=True,  # a demo started again provisions its units again
            selftest=False,
            progress=False,
            out=lambda *a: None,
        ).run()
        self.gateway.register(**reg)  # the home station too, which provisioning does not set

    def start(self):
        boards = {spec.unit_id: self._board(spec) for spec in self.specs}
        self.units.update(boards)
        for spec in self.specs:  # one at a time: broker admins' correlation ids are per admin
            self._provision(spec, boards[spec.unit_id])
        if self.crews:
            for spec in self.specs:
                Crew(boards[spec.unit_id], spec, random.Random(self.rng.random()), self.stop_event).start()
        return self
