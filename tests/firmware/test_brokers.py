# A cluster's nodes (config broker_host "n1:8883,n2:8883"): each connect() goes to the
# next node, the first node first; one broker (brokers None): every connect to it. The
# ports are closed ones on this host, so each connect fails at once and names its node.
import asyncio

from mqtt import MQTTClient, MQTTError


def _tries(c, n):
    """The broker each of n connects went to, as its error names it."""
    went = []
    for _ in range(n):
        try:
            asyncio.run(c.connect())
            raise AssertionError("connected to a closed port")
        except MQTTError as e:
            went.append(str(e).split(" failed")[0])
    return went


def test_each_connect_goes_to_the_next_node_the_first_node_first():
    c = MQTTClient("t1", "127.0.0.1", 1)
    c.brokers = [("127.0.0.1", 1), ("127.0.0.1", 9), ("127.0.0.1", 7)]
    went = _tries(c, 4)
    assert went == ["connect to 127.0.0.1:%d" % p for p in (1, 9, 7, 1)], went
    assert (c.host, c.port) == ("127.0.0.1", 1)  # the last node tried (the log names it)


def test_one_broker_every_connect_goes_to_it():
    c = MQTTClient("t1", "127.0.0.1", 9)
    assert _tries(c, 3) == ["connect to 127.0.0.1:9"] * 3 and c.brokers is None
