"""Nothing lost: a crew's presses reach the dispatcher exactly once, in order, with their
press times, through a broker stop, a silent LTE link, a cut link, a power cut mid-write
and a gateway crash. The short form; `make chaos` runs 200 presses with long outages."""

from simulators.chaos import Chaos


def test_every_press_arrives_exactly_once_through_faults(tmp_path):
    chaos = Chaos(tmp_path, presses=30, seed=5, outage_s=(3, 6)).start()
    try:
        report = chaos.run(fault_every=3)
    finally:
        chaos.stop()
    print("chaos:", report.line())
    assert report.pressed >= 25
    assert all(n >= 1 for n in report.faults.values()), report.faults
    assert report.lost == [] and report.duplicated == 0 and report.out_of_order == 0
    assert report.wrong_time == 0 and report.stored == report.pressed


def test_every_press_arrives_exactly_once_through_faults_on_the_nats_cluster(tmp_path):
    """The same on the 3-node NATS cluster, the unit and the gateway given every node:
    the broker's faults are a node's (stopped or killed: the unit's, then the gateway's)."""
    chaos = Chaos(tmp_path, presses=18, seed=5, outage_s=(2, 4), broker="nats").start()
    try:
        report = chaos.run(fault_every=2)
    finally:
        chaos.stop()
    print("chaos (nats):", report.line())
    assert report.pressed >= 14
    assert set(report.faults) == {
        "node_stop",
        "node_crash",
        "link_silent",
        "power_cut",
        "gateway_crash",
        "link_cut",
    }
    assert all(n >= 1 for n in report.faults.values()), report.faults
    assert report.lost == [] and report.duplicated == 0 and report.out_of_order == 0
    assert report.wrong_time == 0 and report.stored == report.pressed
