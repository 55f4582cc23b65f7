"""A unit given a cluster's nodes (config `broker_host` "host:port,host:port", issue 16),
on real Mosquittos and the firmware in the unix port: each connect goes to the next node,
with the same backoff, so a dead node costs a try, not the link; a node that dies under
the unit takes no press with it (the outbox sends again what the gateway has not
confirmed); over TLS each node's certificate must carry the name verified (the node's own
host, or `broker_hostname` when set). Two independent Mosquittos share no session: what
matters here is that the unit moves on and nothing it pressed is lost."""

import datetime
import ipaddress
import json

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_until

from bench.unit import stored
from provisioning.mosquitto import Mosquitto
from provisioning.processes import free_port
from simulators.gateway_process import GatewayProcess


def _links_up(unit):
    return [line for line in unit.lines if line.startswith("link up: broker ")]


def _failed(unit, port):
    return [line for line in unit.lines if f"connect to 127.0.0.1:{port} failed" in line]


def test_a_dead_node_first_costs_one_try_and_the_unit_links_to_the_next(broker, vunits, unit_id):
    dead = free_port()
    # the live node given without a port: broker_port's
    unit = vunits(unit_id, broker=(f"127.0.0.1:{dead}, 127.0.0.1", broker.port))
    wait_until(lambda: _links_up(unit), what="the link on the live node")
    assert _links_up(unit)[0].startswith(f"link up: broker 127.0.0.1:{broker.port},"), unit.lines
    assert len(_failed(unit, dead)) == 1, unit.lines  # the first try, on the dead node


class _Watcher:
    """A plain client on one node: the topics of what units publish there."""

    def __init__(self, port, topic):
        self.seen = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{port}")
        self.c.on_message = lambda c, userdata, msg: self.seen.append((msg.topic, msg.payload))
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topic, 1)
        self.c.loop_start()

    def stop(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_a_node_killed_under_the_unit_moves_it_to_the_next_and_no_press_is_lost(tmp_path, vunits, unit_id):
    node_a = Mosquitto(tmp_path / "node-a").start()
    node_b = Mosquitto(tmp_path / "node-b").start()
    gateway = GatewayProcess(tmp_path / "gateway", node_b.port).start()  # on B only
    watch_a = _Watcher(node_a.port, f"siaga/{unit_id}/status")
    try:
        gateway.register(unit_id, kind="ambulance")
        unit = vunits(unit_id, broker=(f"127.0.0.1:{node_a.port},127.0.0.1:{node_b.port}", 1))
        wait_until(lambda: _links_up(unit), what="the link on node A")
        assert f"127.0.0.1:{node_a.port}," in _links_up(unit)[0]
        unit.press(3)
        unit.press(4)
        # A took them (PUBACK); no gateway there confirms them
        wait_until(lambda: len(watch_a.seen) >= 2, what="the presses on node A")
        watch_a.stop()
        node_a.kill()  # SIGKILL: the node dies, and the unit's will with it
        wait_until(lambda: len(_links_up(unit)) == 2, 30, what="the link on node B")
        assert f"127.0.0.1:{node_b.port}," in _links_up(unit)[1], unit.lines
        unit.press(5)
        wait_until(lambda: len(stored(gateway, unit_id)) >= 3, 30, what="the presses through node B")
        assert [k for _, _, k in stored(gateway, unit_id)] == [3, 4, 5]  # each once, in order
        assert gateway.unit(unit_id)["link"] == "online"  # its birth on B, no will needed
        wait_until(lambda: unit.state()["leds"].get("5") == "on", what="press 5 confirmed")
    finally:
        gateway.stop()
        node_a.stop()
        node_b.stop()


# TLS: one certificate authority, two nodes' certificates
def _certs(d):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject, key, issuer, issuer_key, names=None):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=names is None, path_length=None), critical=True)
        )
        if names is not None:
            alt = [
                x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names
            ]
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(name, key, crt):
        (d / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        (d / f"{name}.crt").write_bytes(crt.public_bytes(serialization.Encoding.PEM))

    d.mkdir(parents=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    write("ca", ca_key, cert("test CA", ca_key, "test CA", ca_key))
    for name, names in (("good", ["localhost", "127.0.0.1"]), ("other", ["node-b.example"])):
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, key, cert(name, key, "test CA", ca_key, names))
    return d


class _TlsNode(Mosquitto):
    """A plain Mosquitto but for its one TLS listener, with the certificate `name`."""

    def __init__(self, data_dir, certs, name):
        super().__init__(data_dir)
        self.certs, self.name = certs, name

    def _listeners(self):
        c = self.certs
        return (
            f"listener {self.port} {self.bind}\nallow_anonymous true\ncafile {c / 'ca.crt'}\n"
            f"certfile {c / (self.name + '.crt')}\nkeyfile {c / (self.name + '.key')}"
        )


@pytest.mark.parametrize("hostname", ["", "localhost"], ids=["each_node_s_own_name", "broker_hostname"])
def test_tls_a_node_whose_certificate_lacks_the_name_is_refused_and_the_unit_moves_on(
    tmp_path, vunits, unit_id, hostname
):
    certs = _certs(tmp_path / "certs")
    wrong = _TlsNode(tmp_path / "wrong", certs, "other").start()  # signed by the CA, but for node-b.example
    good = _TlsNode(tmp_path / "good", certs, "good").start()
    try:
        unit = vunits(
            unit_id,
            broker=(f"127.0.0.1:{wrong.port},127.0.0.1:{good.port}", 1),
            config={"broker_tls": True, "broker_ca": str(certs / "ca.crt"), "broker_hostname": hostname},
        )
        wait_until(lambda: _links_up(unit), what="the link on the node with the name")
        assert f"127.0.0.1:{good.port}," in _links_up(unit)[0], unit.lines
        refused = _failed(unit, wrong.port)
        assert refused and "TLS" in refused[0] and "does not match" in refused[0], unit.lines
        cfg = json.loads((tmp_path / "flash" / unit_id / "config.json").read_text())
        assert cfg["broker_host"].count(",") == 1  # both nodes in the unit's one key
    finally:
        wrong.stop()
        good.stop()


def test_provisioning_gives_the_unit_every_node_and_refuses_a_malformed_list(tmp_path):
    from provisioning.provision import Provisioner, ProvisionError

    info = {"host": "10.0.0.5", "tls_port": 8883, "cafile": str(tmp_path / "ca.crt")}

    def broker(flag=None, **extra):
        (tmp_path / "broker.json").write_text(json.dumps(dict(info, **extra)))
        p = Provisioner("amb-01", "/dev/null", "virtual", tmp_path, "http://127.0.0.1:1", broker_host=flag)
        return p._broker_info()[:2]  # (broker_host, broker_port) of the unit's config.json

    assert broker() == ("10.0.0.5", 8883)  # one broker, as before
    assert broker("n1.example:8883,n2.example") == ("n1.example:8883,n2.example", 8883)
    nodes = [["127.0.0.1", 4001], ["127.0.0.1", 4002], ["127.0.0.1", 4003]]  # a NATS cluster's
    assert broker(addresses=nodes) == ("127.0.0.1:4001,127.0.0.1:4002,127.0.0.1:4003", 8883)
    assert broker("n1:8883", addresses=nodes) == ("n1:8883", 8883)  # the flag wins
    for bad in ("n1:88x3", "n1,,n2", "n1:", ":8883"):
        with pytest.raises(ProvisionError, match="host or host:port"):
            broker(bad)
