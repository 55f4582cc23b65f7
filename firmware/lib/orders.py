# What the downlink orders now and then, apart from the gateway's acks of presses:
# settings pushed by the gateway, an assignment to an incident by the dispatcher and the
# release from it. The unit loads this module for each such message and gives it back
# (heap.borrow): its code should not hold the heap in between (docs/firmware-memory.md).
from heap import borrow


def obey(u, msg):
    """A checked downlink message (wire.check_json) other than `ack`, for the unit `u`."""
    kind = msg["_type"]
    if kind == "config" and msg["version"] > u.cfg["_version"]:  # not a repeat
        borrow("config").put_in_force(u, msg["values"], msg["version"])
    elif kind == "assign":
        u.assignment = msg["id"]
        u.feedback.alert()
        u.log(
            "assigned: incident %d (%s) at %s,%s; press 3 when en route"
            % (msg["id"], msg.get("kind"), msg.get("lat"), msg.get("lon"))
        )
    elif kind == "release" and msg["id"] == u.assignment:
        u.assignment = None
        u.log("released from incident %d" % msg["id"])
