# Opening a session of the unit's link: connect (with the will), say so (the birth),
# subscribe to the downlink. The unit loads this module for each session and gives it
# back (heap.borrow): a session is opened now and then, and its code should not hold the
# heap in between (docs/firmware-memory.md).
import asyncio

import wire

FIRMWARE_VERSION = "0.1.0"


async def open_session(u):
    """Connect the unit `u`, say so (birth), subscribe: the session's tasks, started."""
    if u.cell is not None and not u.cell.up():
        raise OSError("no mobile network yet: modem %s, %s" % (u.cell.modem.state, u.cell.error))
    birth_seq = u.seq_apart()
    client = u.client  # one client for every session: what it has in flight goes again
    client.will = (u.topics["conn"], wire.encode_json("will", u.boot, birth_seq), 1, True)
    await client.connect()
    now = u.clock.now()
    birth = wire.encode_json(
        "birth",
        u.boot,
        birth_seq,
        t=now,
        sent=now,
        fw=FIRMWARE_VERSION,
        board=u.board.name + "/" + u.board.revision,
        reset=u.reset,
        cfg=u.cfg["_version"],
        dropped=u.outbox.dropped,
        torn=u.outbox.torn,
    )
    reader = asyncio.create_task(client.run())
    try:
        await client.publish(u.topics["conn"], birth, qos=1, retain=True)
        await client.subscribe(u.topics["down"], 1)
    except BaseException:
        reader.cancel()  # it would end with the link, its error never read
        raise
    u.link_up = True
    u.log("link up: broker %s:%d, session present %s" % (client.host, client.port, client.session_present))
    return reader, asyncio.create_task(client.keep_alive()), asyncio.create_task(u.sender(client))
