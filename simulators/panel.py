"""A virtual board's panel for the self-test (provisioning/selftest.py): it presses a key
and reads an LED through the board's control socket, as a technician would at a real
unit's panel."""

import time

from .vunit import control


class VirtualPanel:
    def __init__(self, sim_dir, name, timeout=10.0):
        self.sim_dir, self.name, self.timeout = sim_dir, name, timeout

    def press(self, key):
        control(self.sim_dir, self.name, {"cmd": "press", "key": key})
        return True

    def led_on(self, key):
        """(on, what was seen): waits up to `timeout` s for the LED to be steadily on."""
        deadline = time.monotonic() + self.timeout
        while True:
            mode = control(self.sim_dir, self.name, {"cmd": "state"})["leds"].get(str(key), "off")
            if mode == "on":
                return True, "on: the gateway's confirmation arrived"
            if time.monotonic() > deadline:
                return False, f"{mode}, not on"
            time.sleep(0.3)
