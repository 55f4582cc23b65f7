"""`siaga`, the one command: it composes the packages' own subcommands and nothing else.

The floors, each importing only those below it (make lint checks them, import-linter):

    siaga          the command
    simulators     the test bench: virtual units, fleets, the demo
    provisioning   the technician's tools: broker, CA, provisioning, self-test
    gateway        the gateway: ingest, availability, store, HTTP API
"""
