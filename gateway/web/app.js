// The dispatcher's live map: every unit from /api/v1/units, kept current by the live
// stream (/api/v1/stream, one marker and one list row updated per event), a side list
// in sync with the map, the unit's detail, the incident and its nearest units, and the
// emergency alarm. Plain ES modules, no build step; Leaflet is the global `L`.

import { api, ApiError, can, login, logout, session, whoAmI } from "./api.js";
import { baseLayers, showBaseLayers } from "./basemap.js";
import { age, distance, setZone, supplyLow, volts, wib, wibWhen } from "./format.js";
import { currentLang, setLang, statusLabel, t, translateStatic } from "./i18n.js";
import { firstAnswering, handOverUrl, takeOver } from "./gateways.js";
import { badge, escape, fixAge, look, LOOK, stale, unitIcon } from "./markers.js";

const $ = (sel) => document.querySelector(sel);
const CENTRE = [-2.2096, 113.9136]; // Palangka Raya
const AVAIL_ORDER = ["emergency", "assigned", "available", "busy", "out_of_service", "offline"];
let KINDS = []; // the unit kinds, from /api/v1/map-config

const units = new Map(); // unit_id -> the unit's latest view
const markers = new Map(); // unit_id -> L.marker
const rows = new Map(); // unit_id -> <tr>
const state = {
  selected: null,
  clockOffset: 0, // gateway clock minus browser clock, seconds
  incident: null, // {lat, lon}
  picking: false,
  pending: null, // {unit_id, action_id}: an assignment waiting for the crew
  schemes: {}, // status scheme name -> its statuses, for the dispatcher's status change
  loading: null, // stream events held while /units loads
  streamLost: false,
  oldSince: null, // server time the stream was lost: what the page shows is as of then
  near: [], // the incident's nearest candidates as /nearest gave them (with routes)
  route: null, // the candidate whose route is drawn
  override: null, // {unit_id}: an assignment the API refused, waiting for the reason
  autoView: true, // the map shows what fitUnits chose (the dispatcher has not moved it)
  gateways: [], // every gateway of the centre, from /api/v1/map-config: where to go when this one is silent
  move: null, // {key, params}: the banner about moving to another gateway
};
// For the browser tests and the benchmark: what the page has drawn, and when.
const probe = (window.__siaga = { ready: false, markersDrawnAt: null, updates: [], stream: "connecting", beeping: false });

let map, markerLayer, trackLayer, routeLayer, incidentMarker, source;

const serverNow = () => Date.now() / 1000 + state.clockOffset;

// ---- boot ------------------------------------------------------------------------

async function boot() {
  const arrived = takeOver(); // from another gateway that stopped answering
  setLang(arrived?.lang || currentLang());
  if (arrived) {
    if (arrived.incident) sessionStorage.setItem(SAVED, JSON.stringify(arrived.incident));
    showMove("gateway_moved", { from: arrived.from, to: location.origin }, MOVED_SHOWN_MS);
  }
  bindUi();
  renderStatic();
  if (await whoAmI()) start();
  else showLogin();
}

// Logged in: the map's settings (they need the view permission), then units and stream.
async function start() {
  $("#login").hidden = true;
  applyRole();
  if (!map) {
    const config = await api("GET", "/map-config");
    state.schemes = config.schemes || { default: config.statuses || [] };
    state.gateways = config.gateways || [];
    KINDS = config.unit_kinds || [];
    setZone(config.zone);
    $("#clock").title = `${config.zone.name} (UTC${config.zone.offset_s >= 0 ? "+" : ""}${config.zone.offset_s / 3600})`;
    $("#inc-kind").innerHTML = (config.incident_kinds || [])
      .map((k) => `<option value="${escape(k)}" data-i18n="ik_${escape(k)}">${escape(t("ik_" + k))}</option>`)
      .join("");
    initMap(config);
  }
  connectStream();
  loadUnits();
  checkHealth();
}

// ---- the gateway's own health: a banner when ingest has stalled or the broker is gone --
// When the gateway does not answer at all (the stream lost, and /health silent for
// MOVE_AFTER_MS), the page goes to the next gateway of the centre that answers.

const HEALTH_EVERY_MS = 5000;
const SILENT_EVERY_MS = 2000; // asked more often while it does not answer
const HEALTH_TIMEOUT_MS = 4000;
const MOVE_AFTER_MS = 10000;
const MOVE_NOTICE_MS = 1500; // the banner says where the page goes, then it goes
const MOVED_SHOWN_MS = 30000; // on the next gateway, the banner says where it came from
// A proxy's reply when no gateway is behind it; a gateway's own 503 is JSON and an answer.
const PROXY_STATUSES = [502, 503, 504];
let healthTimer;
let healthAsking = false;
let silentSince = null; // when the gateway last stopped answering (Date.now()), or null

async function checkHealth() {
  if (healthAsking) return;
  healthAsking = true;
  clearTimeout(healthTimer);
  let why = null;
  try {
    const resp = await fetch("/api/v1/health", { headers: { Accept: "application/json" }, cache: "no-store", signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS) });
    if (PROXY_STATUSES.includes(resp.status) && !(resp.headers.get("content-type") || "").includes("json")) throw new Error("no gateway behind the proxy");
    const health = await resp.json();
    if (health.status !== "ok") why = (health.problems || []).join("; ") || health.status;
    silentSince = null;
  } catch (err) {
    why = t("gateway_silent");
    silentSince = silentSince ?? Date.now();
  } finally {
    healthAsking = false;
  }
  probe.degraded = why;
  const banner = $("#degraded");
  banner.hidden = why === null;
  banner.textContent = why === null ? "" : t("degraded", { why });
  if (silentSince === null && state.move?.key === "gateway_none") showMove(null);
  if (silentSince !== null && state.streamLost && Date.now() - silentSince >= MOVE_AFTER_MS) await moveOn();
  healthTimer = setTimeout(checkHealth, silentSince === null ? HEALTH_EVERY_MS : SILENT_EVERY_MS);
}

// To the first other gateway that answers (gateways.js), with what must survive the move.
let moving = false;
async function moveOn() {
  if (moving || !state.gateways.length) return;
  moving = true;
  try {
    const from = location.origin;
    const to = await firstAnswering(state.gateways);
    if (!to) return showMove("gateway_none", { from });
    showMove("gateway_moving", { from, to });
    probe.movingTo = to;
    await new Promise((resolve) => setTimeout(resolve, MOVE_NOTICE_MS));
    if (!state.streamLost) return showMove(null); // its own came back meanwhile
    location.assign(handOverUrl(to, keptOnMove()));
  } finally {
    moving = false;
  }
}

function keptOnMove() {
  const kept = { lang: currentLang() };
  if (!state.incident) return kept;
  return { ...kept, lat: state.incident.lat, lon: state.incident.lon, kind: $("#inc-kind").value, note: $("#inc-note").value };
}

let moveTimer;
function showMove(key, params = {}, hideAfterMs = 0) {
  clearTimeout(moveTimer);
  state.move = key ? { key, params } : null;
  drawMove();
  if (key && hideAfterMs) moveTimer = setTimeout(() => showMove(null), hideAfterMs);
}

function drawMove() {
  const el = $("#gateway-move");
  el.hidden = !state.move;
  el.dataset.key = state.move?.key || "";
  el.textContent = state.move ? t(state.move.key, state.move.params) : "";
}

function applyRole() {
  document.body.classList.toggle("can-dispatch", can("dispatch"));
  document.body.classList.toggle("can-lock", can("lock"));
  document.body.classList.toggle("can-device", can("device"));
  $("#who").textContent = session.user ? `${session.user} (${session.role})` : t("role_open");
  $("#logout").hidden = !session.user;
  $("#dispatch").hidden = !can("view");
}

// ---- the map ----------------------------------------------------------------------

function initMap(config) {
  map = L.map("map", { zoomControl: true }).setView(CENTRE, 13);
  L.control.scale({ imperial: false, position: "bottomleft" }).addTo(map);
  markerLayer = L.layerGroup().addTo(map);
  trackLayer = L.layerGroup().addTo(map);
  routeLayer = L.layerGroup().addTo(map);
  watchTiles(config);
  map.on("movestart", () => {
    if (!fitting) state.autoView = false;
  });
  // The map's box changes with the window, and with a banner above it: Leaflet is told,
  // and a view the dispatcher has not moved is fitted to the units again.
  new ResizeObserver(() => {
    map.invalidateSize();
    if (state.autoView) fitUnits();
  }).observe($("#map"));
  probe.view = () => {
    const b = map.getBounds();
    const size = map.getSize();
    return { south: b.getSouth(), west: b.getWest(), north: b.getNorth(), east: b.getEast(), width: size.x, height: size.y, centre: map.getCenter() };
  };
  map.on("click", (e) => {
    if (state.picking) setIncident(e.latlng.lat, e.latlng.lng);
  });
  map.on("contextmenu", (e) => setIncident(e.latlng.lat, e.latlng.lng));
}

// The base map is optional (basemap.js): the imported offline archive first, else or
// besides it the online `tiles_url`; with none that shows, the map says so and goes on,
// on a plain background, with its scale and the units.
let relabelBaseLayers = () => {};
function watchTiles(config) {
  const layers = baseLayers(config, (up) => tilesDown(!up));
  probe.basemap = "none";
  if (!layers.length) return tilesDown(true);
  for (const l of layers) l.layer.on("tileload", () => (probe.tilesLoaded = (probe.tilesLoaded || 0) + 1));
  relabelBaseLayers = showBaseLayers(map, layers, (shown) => {
    probe.basemap = shown.kind;
    $("#demo-map").hidden = !shown.basemap?.demo;
  });
}

function tilesDown(down) {
  $("#tiles-down").hidden = !down;
  $("#map").classList.toggle("no-tiles", down);
}

// ---- units: load, stream, apply ------------------------------------------------------

async function loadUnits() {
  state.loading = state.loading || [];
  let list;
  try {
    list = await api("GET", "/units");
  } catch (err) {
    state.loading = null;
    return report(err);
  }
  const fixed = list.find((u) => u.position);
  if (fixed) state.clockOffset = fixed.position.fix_time + fixed.position.age - Date.now() / 1000;
  const first = !probe.ready;
  for (const u of list) upsert(u);
  const held = state.loading;
  state.loading = null;
  for (const ev of held) applyEvent(ev);
  fillFilterOptions();
  if (first) {
    fitUnits();
    restoreDispatch();
  } else scheduleNearest();
  scheduleList();
  requestAnimationFrame(() => {
    if (first) probe.markersDrawnAt = performance.now();
    probe.ready = true;
  });
}

let fitting = false;
function fitUnits() {
  const points = [...units.values()].filter((u) => u.position && matches(u)).map((u) => [u.position.lat, u.position.lon]);
  if (!points.length) return;
  fitting = true;
  try {
    map.fitBounds(points, { padding: [40, 40], maxZoom: 15, animate: false });
  } finally {
    fitting = false;
  }
  state.autoView = true;
}

function connectStream() {
  if (source) source.close();
  setStream("connecting");
  source = new EventSource("/api/v1/stream");
  source.addEventListener("open", () => {
    setStream("ok");
    if (state.streamLost) {
      state.streamLost = false;
      loadUnits(); // what happened while the stream was down
    }
  });
  source.addEventListener("error", () => {
    setStream("lost");
    state.streamLost = true;
    if (silentSince === null) checkHealth(); // is it the stream, or the whole gateway?
    if (source.readyState === EventSource.CLOSED) setTimeout(connectStream, 2000);
  });
  source.addEventListener("unit", (e) => {
    const ev = JSON.parse(e.data);
    if (state.loading) state.loading.push(ev);
    else applyEvent(ev);
  });
  // this page fell behind and the gateway dropped some of its events: read all again
  source.addEventListener("dropped", () => loadUnits());
}

function setStream(s) {
  probe.stream = s;
  if (s === "lost" && state.oldSince === null && probe.ready) state.oldSince = serverNow();
  if (s === "ok") state.oldSince = null;
  drawDataOld();
  const el = $("#stream-state");
  el.dataset.state = s;
  el.className = `stream ${s}`;
  el.textContent = t(`stream_${s}`);
}

// While the stream is lost the list and the markers are greyed, and a banner says since
// when what they show is old; it goes when the stream is back (and the units reloaded).
function drawDataOld() {
  const old = state.oldSince !== null;
  document.body.classList.toggle("data-old", old);
  const el = $("#data-old");
  el.hidden = !old;
  el.textContent = old ? t("data_old", { time: wibWhen(state.oldSince, serverNow()) }) : "";
}

function applyEvent(ev) {
  upsert(ev);
  const t0 = ev.emitted;
  requestAnimationFrame(() => {
    probe.updates.push({ unit_id: ev.unit_id, emitted: t0, drawn: (performance.timeOrigin + performance.now()) / 1000 });
    if (probe.updates.length > 5000) probe.updates.splice(0, 1000);
  });
}

function upsert(view) {
  const before = units.get(view.unit_id);
  const u = { ...before, ...view };
  delete u.emitted;
  units.set(u.unit_id, u);
  drawMarker(u);
  drawRow(u);
  if (state.selected === u.unit_id) drawDetail(u, before);
  if (state.pending && state.pending.unit_id === u.unit_id) drawAssignState();
  if (!before || before.emergency !== u.emergency) drawEmergencies();
  if (state.incident && nearestMayChange(before, u)) scheduleNearest();
  scheduleList();
}

function drawMarker(u) {
  let m = markers.get(u.unit_id);
  if (!u.position) {
    if (m) markerLayer.removeLayer(m);
    markers.delete(u.unit_id);
    return;
  }
  const icon = unitIcon(u, serverNow(), state.selected === u.unit_id);
  const ll = [u.position.lat, u.position.lon];
  if (!m) {
    m = L.marker(ll, { icon, keyboard: false, riseOnHover: true });
    m.on("click", () => select(u.unit_id));
    markers.set(u.unit_id, m);
  } else {
    m.setLatLng(ll);
    m.setIcon(icon);
  }
  m.setZIndexOffset(u.availability === "emergency" ? 1000 : 0);
  const shown = matches(u);
  if (shown && !markerLayer.hasLayer(m)) markerLayer.addLayer(m);
  if (!shown && markerLayer.hasLayer(m)) markerLayer.removeLayer(m);
  if (state.selected === u.unit_id && newTrackPoint(u)) trackLayer.eachLayer((l) => l.addLatLng?.(ll));
}

// The selected unit's track grows with each new position.
const lastTrackFix = new Map();
function newTrackPoint(u) {
  const last = lastTrackFix.get(u.unit_id);
  if (last === u.position.fix_time) return false;
  lastTrackFix.set(u.unit_id, u.position.fix_time);
  return last !== undefined;
}

// ---- the side list ----------------------------------------------------------------------

function drawRow(u) {
  let tr = rows.get(u.unit_id);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.unit = u.unit_id;
    tr.tabIndex = 0;
    tr.addEventListener("click", () => select(u.unit_id, true));
    rows.set(u.unit_id, tr);
  }
  const shown = look(u);
  tr.dataset.availability = u.availability;
  tr.dataset.look = shown;
  const cls = shown === "decommissioned" ? "decommissioned" : stale(u) ? "stale" : "";
  tr.className = [cls, state.selected === u.unit_id ? "selected" : ""].join(" ").trim();
  const flags = (u.flags || []).map((f) => `<span class="flag">${escape(t("flag_" + f))}</span>`).join("");
  const why = shown === "decommissioned" ? `${t("f_since")} ${wibWhen(u.decommissioned_at, serverNow())}` : statusLabel(u.status);
  tr.innerHTML =
    `<td>${badge(shown)}</td>` +
    `<td class="callsign" title="${escape(u.agency || "")}"><span class="cs">${escape(u.callsign || u.unit_id)}</span>` +
    `<small>${escape(t("kind_" + u.kind))}</small></td>` +
    `<td class="availability">${escape(t("av_" + shown))} <small>${escape(why)}</small>${flags}</td>` +
    `<td class="age">${escape(fixAge(u, serverNow()))}</td>`;
  tr.hidden = !matches(u);
}

function filters() {
  return {
    q: $("#search").value.trim().toLowerCase(),
    kind: $("#f-kind").value,
    agency: $("#f-agency").value,
    availability: $("#f-avail").value,
    decommissioned: $("#f-decommissioned").checked,
  };
}

// A decommissioned unit is hidden unless the dispatcher ticks "show decommissioned": it
// has left the fleet (a retired vehicle, a board taken out) and will not come back by
// itself. On a screen scanned for a unit to send it is only clutter, and a greyed marker
// would pass for an offline unit that may call in any minute. Ticked, it is shown with a
// look and label of its own, for whoever looks for it or its history.
function matches(u, f = filters()) {
  if (u.decommissioned_at != null && !f.decommissioned) return false;
  if (f.kind && u.kind !== f.kind) return false;
  if (f.agency && u.agency !== f.agency) return false;
  if (f.availability && u.availability !== f.availability) return false;
  if (f.q && !`${u.callsign} ${u.unit_id}`.toLowerCase().includes(f.q)) return false;
  return true;
}

const SORTS = {
  callsign: (a, b) => (a.callsign || a.unit_id).localeCompare(b.callsign || b.unit_id),
  availability: (a, b) => AVAIL_ORDER.indexOf(a.availability) - AVAIL_ORDER.indexOf(b.availability) || SORTS.callsign(a, b),
  age: (a, b) => (a.position ? -a.position.fix_time : Infinity) - (b.position ? -b.position.fix_time : Infinity) || SORTS.callsign(a, b),
};

let listQueued = false;
function scheduleList() {
  if (listQueued) return;
  listQueued = true;
  requestAnimationFrame(() => {
    listQueued = false;
    orderList();
  });
}

function orderList() {
  const f = filters();
  const sorted = [...units.values()].sort(SORTS[$("#sort").value] || SORTS.callsign);
  const body = $("#units tbody");
  let shown = 0;
  sorted.forEach((u, i) => {
    const tr = rows.get(u.unit_id);
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    tr.hidden = !matches(u, f);
    if (!tr.hidden) shown += 1;
  });
  $("#counts").textContent = t("counts", { shown, total: units.size });
  const gone = [...units.values()].filter((u) => u.decommissioned_at != null).length;
  $("#decommissioned-count").textContent = gone ? `(${gone})` : "";
}

function refilter() {
  for (const u of units.values()) drawMarker(u);
  orderList();
}

function fillFilterOptions() {
  fillSelect("#f-kind", KINDS.filter((k) => [...units.values()].some((u) => u.kind === k)), (k) => t("kind_" + k));
  const agencies = [...new Set([...units.values()].map((u) => u.agency).filter(Boolean))].sort();
  fillSelect("#f-agency", agencies, (a) => a);
  fillSelect("#f-avail", AVAIL_ORDER, (a) => t("av_" + a));
}

function fillSelect(sel, values, label) {
  const el = $(sel);
  const keep = el.value;
  while (el.options.length > 1) el.remove(1);
  for (const v of values) el.add(new Option(label(v), v));
  el.value = values.includes(keep) ? keep : "";
}

// ---- selection and detail ----------------------------------------------------------------

async function select(unitId, pan = false) {
  const previous = state.selected;
  state.selected = unitId;
  for (const id of [previous, unitId]) {
    const u = id && units.get(id);
    if (u) {
      drawMarker(u);
      drawRow(u);
    }
  }
  trackLayer.clearLayers();
  const u = units.get(unitId);
  if (!u) return closeDetail();
  if (pan && u.position) map.panTo([u.position.lat, u.position.lon]);
  $("#detail").hidden = false;
  drawDetail(u);
  const [detail, history, track] = await Promise.all([
    api("GET", `/units/${encodeURIComponent(unitId)}`),
    api("GET", `/units/${encodeURIComponent(unitId)}/statuses?limit=20`),
    api("GET", `/units/${encodeURIComponent(unitId)}/track`),
  ]).catch((err) => (report(err), []));
  if (state.selected !== unitId || !detail) return;
  units.set(unitId, { ...units.get(unitId), device: detail.device });
  drawHistory(history);
  drawTrack(track);
  drawDevice(detail.device, units.get(unitId));
}

function closeDetail() {
  const previous = state.selected;
  state.selected = null;
  trackLayer.clearLayers();
  $("#detail").hidden = true;
  const u = previous && units.get(previous);
  if (u) {
    drawMarker(u);
    drawRow(u);
  }
}

function fact(label, value) {
  return `<dt>${escape(t(label))}</dt><dd>${value}</dd>`;
}

function drawDetail(u, before) {
  const now = serverNow();
  $("#d-callsign").innerHTML = `${badge(look(u))} ${escape(u.callsign || u.unit_id)} <small>${escape(t("kind_" + u.kind))}</small>`;
  const s = u.status;
  const p = u.position;
  const parts = [
    fact("f_availability", `<b data-field="availability">${escape(t("av_" + look(u)))}</b>`),
    fact(
      "f_status",
      s
        ? `${escape(statusLabel(s))} · ${t("f_since")} ${wibWhen(s.since, now)} · ${t("f_source")} ${escape(t("src_" + s.source))}${s.reason ? ` · “${escape(s.reason)}”` : ""}`
        : t("none"),
    ),
  ];
  if (u.overridden) parts.push(fact("f_overridden", `${escape(statusLabel(u.overridden))} · ${escape(t("src_" + u.overridden.source))} ${wib(u.overridden.since)}`));
  if (u.decommissioned_at != null) parts.push(fact("f_decommissioned", `${t("f_since")} ${wibWhen(u.decommissioned_at, now)}`));
  parts.push(fact("f_flags", (u.flags || []).map((f) => `<span class="flag">${escape(t("flag_" + f))}</span>`).join(" ") || t("none")));
  if (u.emergency) {
    const ack = u.emergency.acknowledged_by ? ` · ${escape(t("acked_by", { user: u.emergency.acknowledged_by, time: wib(u.emergency.acknowledged_at) }))}` : "";
    parts.push(fact("f_emergency", `${t("f_since")} ${wib(u.emergency.since)}${ack}`));
  }
  if (u.assignment) {
    const a = u.assignment;
    parts.push(fact("f_assignment", `${escape(t("ik_" + a.kind))} · ${wib(a.assigned_at)} · ${a.acknowledged ? "✓" : "…"} ${escape(a.note || "")}`));
  }
  parts.push(
    fact(
      "f_position",
      p
        ? `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)} · ${p.speed != null ? Math.round(p.speed * 3.6) + " km/j" : ""} ${p.heading != null ? Math.round(p.heading) + "°" : ""} · ${t("pos_age")} ${age(now - p.fix_time)}`
        : t("no_position"),
    ),
  );
  parts.push(fact("f_link", `${escape(u.link)} · ${t("f_last_seen")} ${wibWhen(u.last_seen, now)}`));
  if (u.agency) parts.push(fact("f_agency", escape(u.agency)));
  $("#d-facts").innerHTML = parts.join("");
  drawActions(u);
  if (before && before.status && s && before.status.since !== s.since) refreshHistory(u.unit_id);
}

async function refreshHistory(unitId) {
  const history = await api("GET", `/units/${encodeURIComponent(unitId)}/statuses?limit=20`).catch(() => null);
  if (history && state.selected === unitId) drawHistory(history);
}

function drawHistory(history) {
  $("#d-history").innerHTML = (history || [])
    .map(
      (h) =>
        `<li>${wibWhen(h.pressed_at, serverNow())} · ${escape(h.key)} ${escape(h.label || "")} · ${escape(t("src_" + h.source))}` +
        `${h.user ? " " + escape(h.user) : ""}${h.reason ? ` · “${escape(h.reason)}”` : ""}</li>`,
    )
    .join("");
}

function drawTrack(track) {
  trackLayer.clearLayers();
  const feature = track && track.features && track.features[0];
  if (!feature) return;
  const latlngs = feature.geometry.coordinates.map(([lon, lat]) => [lat, lon]);
  L.polyline(latlngs, { color: "#1565c0", weight: 4, opacity: 0.7, className: "track" }).addTo(trackLayer);
}

function drawDevice(device, u) {
  const el = $("#d-device");
  if (!can("device") || !device) {
    el.innerHTML = "";
    return;
  }
  const p = u.position || {};
  const tele = device.telemetry || {};
  const signal = tele.rssi != null ? `${tele.rssi} dBm` : null;
  const network = tele.reg ? [tele.reg, tele.op, tele.act].filter(Boolean).join(", ") : null;
  const supply = Number.isFinite(tele.supply_v) ? { html: supplyHtml(tele.supply_v) } : null;
  const rows_ = [
    ["dev_fw", device.fw],
    ["dev_board", device.board],
    ["dev_reset", device.reset],
    ["dev_boot", device.boot],
    ["dev_cfg", device.cfg],
    ["dev_signal", signal],
    ["dev_network", network],
    ["dev_supply", supply],
    ["dev_backlog", tele.waiting],
    ["dev_flash", tele.flash_free != null ? `${Math.round(tele.flash_free / 1024)} KB` : null],
    ["dev_heap", tele.heap_free != null ? `${Math.round(tele.heap_free / 1024)} KB` : null],
    ["dev_tele_at", tele.received_at != null ? wib(tele.received_at) : null],
    ["dev_sats", p.sats != null ? `${p.sats} / ${p.hdop ?? "—"}` : null],
    ["dev_dropped", device.dropped ? JSON.stringify(device.dropped) : null],
  ];
  el.innerHTML =
    `<h3>${escape(t("device"))}</h3><dl>` +
    rows_.map(([k, v]) => fact(k, v && v.html ? v.html : escape(v ?? t("none")))).join("") +
    "</dl>";
}

// "12.6 V", or a warning mark and words when it is low (format.js supplyLow).
function supplyHtml(v) {
  if (!supplyLow(v)) return `<span class="supply">${escape(volts(v))}</span>`;
  return `<span class="supply low" data-low="true">⚠ ${escape(volts(v))} · ${escape(t("supply_low"))}</span>`;
}

// ---- actions on a unit ---------------------------------------------------------------------

function drawActions(u) {
  const box = $("#d-actions");
  const html = [];
  if (can("dispatch")) {
    if (state.incident && u.availability === "available") {
      html.push(`<button type="button" data-action="assign" class="primary">${escape(t("assign"))} (a)</button>`);
    }
    if (u.emergency && !u.emergency.acknowledged_by) html.push(`<button type="button" data-action="ack" class="danger">${escape(t("ack"))}</button>`);
    if (u.emergency) html.push(`<button type="button" data-action="clear-emergency">${escape(t("clear_emergency"))}</button>`);
    if (u.assignment) html.push(`<button type="button" data-action="release">${escape(t("release"))}</button>`);
    const scheme = state.schemes[u.status_scheme] || state.schemes.default || [];
    const options = scheme
      .filter((s) => s.settable)
      .map((s) => `<option value="${s.key}">${escape(statusLabel(s))}</option>`)
      .join("");
    if (u.decommissioned_at == null) {
      html.push(
        `<form class="status-form"><select name="key">${options}</select>` +
          `<input name="reason" placeholder="${escape(t("reason"))}" maxlength="500">` +
          `<button type="submit">${escape(t("set_status"))}</button></form>`,
      );
    }
  }
  const locked = (u.flags || []).includes("status_locked");
  if (can("lock") && (locked || u.decommissioned_at == null)) {
    // a decommissioned unit cannot be locked (409), only unlocked
    html.push(`<button type="button" data-action="${locked ? "unlock" : "lock"}">${escape(t(locked ? "unlock" : "lock"))}</button>`);
  }
  // Keep a half-typed reason across stream updates of the same unit (another unit's
  // scheme may lack the key chosen).
  const form = box.querySelector(".status-form");
  const typed = form && box.dataset.unit === u.unit_id && { key: form.key.value, reason: form.reason.value, focused: document.activeElement === form.reason };
  box.innerHTML = html.join(" ");
  box.dataset.unit = u.unit_id;
  const again = box.querySelector(".status-form");
  if (again && typed) {
    if ([...again.key.options].some((o) => o.value === typed.key)) again.key.value = typed.key;
    again.reason.value = typed.reason;
    if (typed.focused) again.reason.focus();
  }
}

async function unitAction(unitId, action, body = {}) {
  try {
    const reply = await api("POST", `/units/${encodeURIComponent(unitId)}/${action}`, body);
    if (reply && reply.unit) upsert(reply.unit);
    toastKey("done");
    return reply;
  } catch (err) {
    report(err);
    return null;
  }
}

// One click assigns an available unit. The gateway refuses one that is not (409
// not_available: already assigned, busy, offline...) unless the dispatcher confirms,
// with a reason, that it is meant: the page asks for it and sends it as override_reason.
async function assign(unitId, overrideReason) {
  if (!state.incident || !can("dispatch")) return;
  const { lat, lon } = state.incident;
  const body = { lat, lon, kind: $("#inc-kind").value, note: $("#inc-note").value };
  if (overrideReason) body.override_reason = overrideReason;
  let reply;
  try {
    reply = await api("POST", `/units/${encodeURIComponent(unitId)}/assign`, body);
  } catch (err) {
    if (err instanceof ApiError && err.code === "not_available") return askOverride(unitId);
    return report(err);
  }
  closeOverride();
  upsert(reply.unit);
  toastKey("done");
  state.pending = { unit_id: unitId, action_id: reply.action_id };
  drawAssignState();
  scheduleNearest(0);
}

function askOverride(unitId) {
  state.override = { unit_id: unitId };
  drawOverride();
  $("#override").hidden = false;
  $("#override-reason").value = "";
  $("#override-reason").focus();
}

function drawOverride() {
  const o = state.override;
  const u = o && units.get(o.unit_id);
  if (!u) return;
  $("#override").dataset.unit = u.unit_id;
  $("#override-ask").textContent = t("override_ask", { unit: u.callsign || u.unit_id, availability: t("av_" + look(u)) });
}

function closeOverride() {
  state.override = null;
  $("#override").hidden = true;
}

function drawAssignState() {
  const el = $("#assign-state");
  const p = state.pending;
  const u = p && units.get(p.unit_id);
  if (!u) {
    el.textContent = "";
    el.dataset.state = "";
    return;
  }
  const a = u.assignment;
  const acked = (a && a.id === p.action_id && a.acknowledged) || (!a && u.availability !== "assigned");
  el.dataset.state = acked ? "acknowledged" : "assigned";
  el.dataset.unit = u.unit_id;
  el.textContent = t(acked ? "assigned_acked" : "assigned_wait", { unit: u.callsign || u.unit_id });
}

// ---- incidents and the nearest units ----------------------------------------------------------

function setIncident(lat, lon, keepRoute = false) {
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 180) {
    return toastKey("bad_coords");
  }
  state.picking = false;
  $("#map").classList.remove("picking");
  state.incident = { lat, lon };
  if (!keepRoute) showRoute(null);
  $("#inc-lat").value = lat.toFixed(5);
  $("#inc-lon").value = lon.toFixed(5);
  const icon = L.divIcon({ className: "incident-icon", html: "<div class=\"incident\">✚</div>", iconSize: [30, 30], iconAnchor: [15, 15] });
  if (incidentMarker) incidentMarker.setLatLng([lat, lon]);
  else incidentMarker = L.marker([lat, lon], { icon, zIndexOffset: 2000 }).addTo(map);
  saveDispatch();
  findNearest();
  const u = state.selected && units.get(state.selected);
  if (u) drawActions(u);
}

// The marked incident lives in this tab's sessionStorage, so a reload keeps it; the
// assignment the dispatcher made lives on the gateway (each unit's `assignment` says
// who made it), so a reload, or another browser, shows "waiting for the crew" again.
const SAVED = "siaga.incident";
function saveDispatch() {
  if (!state.incident) return sessionStorage.removeItem(SAVED);
  const { lat, lon } = state.incident;
  sessionStorage.setItem(SAVED, JSON.stringify({ lat, lon, kind: $("#inc-kind").value, note: $("#inc-note").value }));
}

function restoreDispatch() {
  const mine = [...units.values()]
    .filter((u) => u.assignment && (!session.user || u.assignment.assigned_by === session.user))
    .sort((a, b) => b.assignment.assigned_at - a.assignment.assigned_at)[0];
  if (mine) state.pending = { unit_id: mine.unit_id, action_id: mine.assignment.id };
  drawAssignState();
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(SAVED) || "null");
  } catch (err) {
    saved = null;
  }
  const incident = saved || (mine && mine.assignment);
  if (!incident || !Number.isFinite(incident.lat) || !Number.isFinite(incident.lon)) return;
  if ([...$("#inc-kind").options].some((o) => o.value === incident.kind)) $("#inc-kind").value = incident.kind;
  $("#inc-note").value = incident.note || "";
  setIncident(incident.lat, incident.lon);
}

// Whether a unit's change may change the nearest list: its availability changed, or it
// is in the list (it moved, its fix aged), or it could now enter it.
function nearestMayChange(before, u) {
  if (!before || before.availability !== u.availability || before.decommissioned_at !== u.decommissioned_at) return true;
  if (u.availability !== "available") return false;
  return !before.position || !u.position || before.position.lat !== u.position.lat || before.position.lon !== u.position.lon;
}

// The list follows every change, at most one request in flight and one waiting.
const NEAREST_GAP_MS = 400;
let nearestTimer = null;
let nearestAsked = 0;
function scheduleNearest(delay = NEAREST_GAP_MS) {
  if (!state.incident) return;
  drawNearest(); // a unit no longer available leaves the list at once
  if (nearestTimer !== null && delay > 0) return;
  clearTimeout(nearestTimer);
  nearestTimer = setTimeout(() => {
    nearestTimer = null;
    findNearest();
  }, delay);
}

async function findNearest() {
  if (!state.incident) return;
  const { lat, lon } = state.incident;
  const kind = $("#inc-kind").value;
  const asked = ++nearestAsked;
  let near;
  try {
    near = await api("GET", `/nearest?lat=${lat}&lon=${lon}&incident_kind=${encodeURIComponent(kind)}&limit=8&route=true`);
  } catch (err) {
    return report(err);
  }
  if (asked !== nearestAsked || !state.incident || state.incident.lat !== lat || state.incident.lon !== lon) return;
  state.near = near;
  probe.nearestAt = (probe.nearestAt || 0) + 1;
  drawNearest();
  if (state.route) showRoute(state.route);
}

// A candidate is still offered only while the page knows it available.
function offered() {
  return state.near.filter((c) => {
    const u = units.get(c.unit_id);
    return !u || (u.availability === "available" && u.decommissioned_at == null);
  });
}

function candidateHtml(c, now) {
  const u = units.get(c.unit_id) || c;
  const road = c.method === "road" && c.eta_min != null;
  const how = road
    ? `<span class="eta">${escape(t("eta", { min: Math.max(1, Math.round(c.eta_min)) }))}</span> · ` +
      `<span class="road-km">${escape(t("road_km", { km: (c.road_m / 1000).toFixed(1) }))}</span>`
    : `<span class="straight" title="${escape(t("straight_title"))}">${escape(t("straight"))}</span> ${distance(c.distance_m)}`;
  const fix = u.position || c.position;
  return (
    `<li data-unit="${escape(c.unit_id)}" data-method="${escape(c.method)}" class="${state.route === c.unit_id ? "selected" : ""}" tabindex="0" title="${escape(t("show_route"))}">` +
    `${badge(u.availability)} <b>${escape(u.callsign || u.unit_id)}</b> <small>${escape(t("kind_" + u.kind))}</small><br>` +
    `${how} · ${t("pos_age")} <span class="near-age" data-unit="${escape(c.unit_id)}">${age(now - fix.fix_time)}</span>` +
    (can("dispatch") ? ` <button type="button" data-assign="${escape(c.unit_id)}" class="primary">${escape(t("assign"))}</button>` : "") +
    `</li>`
  );
}

// Drawn again only when what it says changes (the ages tick by themselves): a list
// redrawn under the pointer would swallow the dispatcher's click on "Tugaskan".
let nearestDrawn = "";
function drawNearest() {
  if (!state.incident) {
    $("#nearest").innerHTML = "";
    nearestDrawn = "";
    return;
  }
  const now = serverNow();
  const list = offered();
  if (state.route && !list.some((c) => c.unit_id === state.route)) showRoute(null);
  const drawn = JSON.stringify([currentLang(), can("dispatch"), state.route, list.map((c) => [c.unit_id, c.method, c.eta_min, c.road_m, c.distance_m, (units.get(c.unit_id) || c).availability])]);
  if (drawn === nearestDrawn && $("#nearest").children.length) return;
  nearestDrawn = drawn;
  $("#nearest").innerHTML = list.length
    ? list.map((c) => candidateHtml(c, now)).join("")
    : `<li class="empty">${escape(t("no_nearest"))}</li>`;
}

// The selected candidate's way to the incident: by road as the gateway found it, or the
// straight line (dashed) for a unit the roads do not reach or when there is no road map.
function showRoute(unitId) {
  state.route = unitId;
  routeLayer.clearLayers();
  for (const li of document.querySelectorAll("#nearest li[data-unit]")) li.classList.toggle("selected", li.dataset.unit === unitId);
  const c = unitId && state.near.find((x) => x.unit_id === unitId);
  if (!c || !state.incident) return;
  const from = (units.get(c.unit_id) || c).position || c.position;
  const latlngs = c.route // without a road map the gateway gives none: the straight line
    ? c.route.coordinates.map(([lon, lat]) => [lat, lon])
    : [[from.lat, from.lon], [state.incident.lat, state.incident.lon]];
  const straight = c.method !== "road";
  L.polyline(latlngs, {
    color: straight ? "#555" : "#0b7285",
    weight: 5,
    opacity: 0.85,
    dashArray: straight ? "8 8" : null,
    className: `route ${straight ? "route-straight" : "route-road"}`,
  }).addTo(routeLayer);
}

function startPicking() {
  state.picking = true;
  $("#map").classList.add("picking");
  toastKey("pick_point");
}

// ---- emergencies ------------------------------------------------------------------------------

function drawEmergencies() {
  const open = [...units.values()].filter((u) => u.emergency && !u.emergency.acknowledged_by).sort((a, b) => a.emergency.since - b.emergency.since);
  $("#emergencies").innerHTML = open
    .map(
      (u) =>
        `<div class="emergency" data-unit="${escape(u.unit_id)}" title="${escape(u.callsign || u.unit_id)}"><span class="siren">‼</span> ` +
        `${escape(t("emergency_banner", { unit: u.callsign || u.unit_id, time: wib(u.emergency.since) }))} ` +
        (can("dispatch") ? `<button type="button" data-ack="${escape(u.unit_id)}">${escape(t("ack"))} (e)</button>` : "") +
        `</div>`,
    )
    .join("");
  alarm(open.length > 0);
}

let audio, beepTimer;
function alarm(on) {
  probe.beeping = on;
  if (!on) {
    clearInterval(beepTimer);
    beepTimer = null;
    return;
  }
  if (beepTimer) return;
  beep();
  beepTimer = setInterval(beep, 1500);
}

function beep() {
  try {
    audio = audio || new AudioContext();
    if (audio.state === "suspended") {
      audio.resume();
      toastKey("sound_blocked"); // the browser waits for a touch on the page
    }
    [880, 660].forEach((freq, i) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.value = 0.2;
      osc.connect(gain).connect(audio.destination);
      const at = audio.currentTime + i * 0.25;
      osc.start(at);
      osc.stop(at + 0.2);
    });
  } catch (err) {
    console.warn("no sound:", err);
  }
}

function centreOn(unitId) {
  const u = units.get(unitId);
  if (!u) return;
  select(unitId);
  if (u.position) map.setView([u.position.lat, u.position.lon], Math.max(map.getZoom(), 15), { animate: false });
  rows.get(unitId)?.scrollIntoView({ block: "nearest" });
}

function ackOldest() {
  const first = $("#emergencies [data-ack]");
  if (first) unitAction(first.dataset.ack, "ack-emergency");
}

// ---- the rest of the page ----------------------------------------------------------------------

function toast(message, key = null, params = {}) {
  const el = $("#toast");
  el.textContent = message;
  el.dataset.key = key || "";
  toast.params = params;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 4000);
}

// A message of the page's own, said again in the other language if it is switched while shown.
function toastKey(key, params = {}) {
  toast(t(key, params), key, params);
}

function report(err) {
  if (err instanceof ApiError && err.status === 401) return showLogin();
  toast(err.message || String(err));
  console.error(err);
}

function showLogin() {
  $("#login").hidden = false;
  $("#login-user").focus();
}

const SHORTCUTS = [
  ["/", "k_search"],
  ["n", "k_new"],
  ["a", "k_assign"],
  ["e", "k_ack"],
  ["j / k", "k_next"],
  ["l", "k_lang"],
  ["Esc", "k_esc"],
  ["?", "k_help"],
];

function renderStatic() {
  translateStatic();
  $("#lang").textContent = currentLang() === "id" ? "EN" : "ID";
  $("#shortcut-list").innerHTML = SHORTCUTS.map(([k, d]) => `<dt><kbd>${k}</kbd></dt><dd>${escape(t(d))}</dd>`).join("");
  $("#legend").innerHTML =
    `<b>${escape(t("legend"))}</b>` +
    Object.keys(LOOK).map((a) => `<span>${badge(a)} ${escape(t("av_" + a))}</span>`).join("") +
    `<span class="stale">${badge("available")} ${escape(t("stale"))}</span>`;
  setStream(probe.stream);
  applyRole();
}

function switchLanguage() {
  setLang(currentLang() === "id" ? "en" : "id");
  renderStatic();
  relabelBaseLayers();
  fillFilterOptions();
  for (const u of units.values()) {
    drawMarker(u);
    drawRow(u);
  }
  orderList();
  drawEmergencies();
  drawAssignState();
  drawDataOld();
  drawMove();
  drawOverride();
  drawNearest();
  const u = state.selected && units.get(state.selected);
  if (u) {
    drawDetail(u);
    drawDevice(u.device, u);
  }
  const shown = $("#toast");
  if (!shown.hidden && shown.dataset.key) shown.textContent = t(shown.dataset.key, toast.params);
}

function tick() {
  const now = serverNow();
  $("#clock").textContent = wib(now);
  for (const [id, m] of markers) {
    const el = m.getElement();
    const span = el && el.querySelector(".age");
    if (span) span.textContent = fixAge(units.get(id), now);
  }
  for (const [id, tr] of rows) {
    const td = tr.querySelector("td.age");
    if (td) td.textContent = fixAge(units.get(id), now);
  }
  for (const span of document.querySelectorAll("#nearest .near-age")) {
    const u = units.get(span.dataset.unit);
    if (u && u.position) span.textContent = age(now - u.position.fix_time);
  }
}

function moveSelection(step) {
  const visible = [...$("#units tbody").children].filter((tr) => !tr.hidden);
  if (!visible.length) return;
  const i = visible.findIndex((tr) => tr.dataset.unit === state.selected);
  const next = visible[(i + step + visible.length) % visible.length];
  select(next.dataset.unit, true);
  next.scrollIntoView({ block: "nearest" });
}

function onKey(e) {
  const typing = e.target.closest("input, select, textarea");
  if (e.key === "Escape") {
    if (typing) return e.target.blur();
    if (!$("#help").hidden) return ($("#help").hidden = true);
    if (!$("#override").hidden) return closeOverride();
    if (state.picking) {
      state.picking = false;
      return $("#map").classList.remove("picking");
    }
    return closeDetail();
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey || !$("#login").hidden) return;
  const actions = {
    "/": () => $("#search").focus(),
    n: startPicking,
    a: () => state.selected && assign(state.selected),
    e: ackOldest,
    j: () => moveSelection(1),
    k: () => moveSelection(-1),
    l: switchLanguage,
    "?": () => ($("#help").hidden = !$("#help").hidden),
  };
  const run = actions[e.key];
  if (run) {
    e.preventDefault();
    run();
  }
}

function bindUi() {
  document.addEventListener("keydown", onKey);
  $("#lang").addEventListener("click", switchLanguage);
  $("#help-button").addEventListener("click", () => ($("#help").hidden = false));
  $("#help-close").addEventListener("click", () => ($("#help").hidden = true));
  $("#d-close").addEventListener("click", closeDetail);
  $("#new-incident").addEventListener("click", startPicking);
  $("#logout").addEventListener("click", async () => {
    await logout();
    location.reload();
  });
  for (const sel of ["#search", "#f-kind", "#f-agency", "#f-avail", "#f-decommissioned", "#sort"]) $(sel).addEventListener("input", refilter);
  $("#incident-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setIncident(parseFloat($("#inc-lat").value), parseFloat($("#inc-lon").value));
  });
  $("#inc-kind").addEventListener("change", () => {
    saveDispatch();
    showRoute(null);
    findNearest();
  });
  $("#inc-note").addEventListener("change", saveDispatch);
  $("#nearest").addEventListener("click", (e) => {
    const b = e.target.closest("[data-assign]");
    if (b) return assign(b.dataset.assign);
    const li = e.target.closest("li[data-unit]");
    if (li) showRoute(state.route === li.dataset.unit ? null : li.dataset.unit);
  });
  $("#override").addEventListener("submit", (e) => {
    e.preventDefault();
    const why = $("#override-reason").value.trim();
    if (!why) return toastKey("reason_required");
    if (state.override) assign(state.override.unit_id, why);
  });
  $("#override-cancel").addEventListener("click", closeOverride);
  // The banner: its button acknowledges; anywhere else selects the unit and centres it.
  $("#emergencies").addEventListener("click", (e) => {
    const b = e.target.closest("[data-ack]");
    if (b) return unitAction(b.dataset.ack, "ack-emergency");
    const banner = e.target.closest(".emergency[data-unit]");
    if (banner) centreOn(banner.dataset.unit);
  });
  $("#d-actions").addEventListener("click", (e) => {
    const b = e.target.closest("[data-action]");
    if (!b || !state.selected) return;
    const action = b.dataset.action;
    if (action === "assign") return assign(state.selected);
    unitAction(state.selected, action === "ack" ? "ack-emergency" : action, {});
  });
  $("#d-actions").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = e.target;
    if (!f.reason.value.trim()) return toastKey("reason_required");
    unitAction(state.selected, "status", { key: Number(f.key.value), reason: f.reason.value.trim() });
    f.reason.value = "";
  });
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("#login-error").textContent = "";
    try {
      await login($("#login-user").value, $("#login-pass").value);
      start();
    } catch (err) {
      $("#login-error").textContent = err.message;
    }
  });
  // A browser starts sound only after the user has touched the page.
  document.addEventListener("pointerdown", () => audio && audio.resume(), { once: true });
  setInterval(tick, 1000);
}

boot().catch((err) => {
  console.error(err);
  toast(String(err.message || err));
});
