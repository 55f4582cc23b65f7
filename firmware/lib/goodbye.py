# Ignition off: the unit says goodbye (a retained `bye` on its conn topic, so the gateway
# knows it went away on purpose rather than by its last will), logs its figures and the
# firmware ends (main.py takes the SystemExit as a clean stop). Loaded only then.
import asyncio

import wire
from unit import LINK_ERRORS


def start(unit):
    unit.stopping = True  # the link task reconnects no more
    asyncio.create_task(_bye(unit))


async def _bye(unit):
    client = unit.client
    if client is not None:
        now = unit.clock.now()
        try:
            payload = wire.encode_json("bye", unit.boot, unit.next_seq(), t=now, sent=now)
            await client.publish(unit.topics["conn"], payload, qos=1, retain=True, timeout_ms=2000)
            await client.disconnect()
        except LINK_ERRORS:
            pass
    unit.log_stats()
    unit.log("shut down")
    raise SystemExit(0)
