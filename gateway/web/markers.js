// A unit on the map: an L.divIcon whose shape and glyph say the availability as well as
// its colour (never colour alone), with the callsign, a heading arrow while moving and
// the age of the last fix. Stale and offline units are greyed and dashed; a
// decommissioned unit has a look of its own (⊘ on hatching, callsign struck out).

import { age } from "./format.js";
import { t } from "./i18n.js";

// availability -> [shape, glyph]
export const LOOK = {
  available: ["circle", "✓"],
  assigned: ["diamond", "!"],
  busy: ["square", "●"],
  out_of_service: ["square", "✕"],
  emergency: ["triangle", "‼"],
  offline: ["circle", "?"],
  decommissioned: ["square", "⊘"], // not an availability: out of the fleet (`siaga unit decommission`)
};

const MOVING = 1.0; // m/s, as the gateway's availability core

export function stale(unit) {
  return unit.availability === "offline" || (unit.flags || []).includes("position_stale");
}

// What a unit looks like: its availability, unless it is decommissioned (then the API
// says out_of_service, and the page says why).
export function look(unit) {
  return unit.decommissioned_at != null ? "decommissioned" : unit.availability;
}

export function badge(availability) {
  const [shape, glyph] = LOOK[availability] || LOOK.offline;
  return `<span class="badge av-${availability} shape-${shape}"><b>${glyph}</b></span>`;
}

function escape(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function fixAge(unit, serverNow) {
  const p = unit.position;
  return p ? age(serverNow - p.fix_time) : t("no_position");
}

function arrow(unit) {
  const p = unit.position;
  if (!p || p.speed == null || p.speed < MOVING || p.heading == null || unit.availability === "offline") {
    return "";
  }
  return `<span class="heading" style="transform: rotate(${Math.round(p.heading)}deg)">▲</span>`;
}

export function markerHtml(unit, serverNow, selected) {
  const shown = look(unit);
  const classes = ["unit-marker", `av-${shown}`];
  if (shown === "decommissioned") classes.push("decommissioned");
  else if (stale(unit)) classes.push("stale");
  if (selected) classes.push("selected");
  if (unit.emergency && !unit.emergency.acknowledged_by) classes.push("alarm");
  return (
    `<div class="${classes.join(" ")}" data-unit="${escape(unit.unit_id)}" ` +
    `data-availability="${escape(unit.availability)}" data-look="${shown}" title="${escape(t("av_" + shown))}">` +
    (shown === "decommissioned" ? "" : arrow(unit)) +
    badge(shown) +
    `<span class="callsign">${escape(unit.callsign || unit.unit_id)}</span>` +
    `<span class="age">${escape(fixAge(unit, serverNow))}</span>` +
    `</div>`
  );
}

export function unitIcon(unit, serverNow, selected) {
  return L.divIcon({
    className: "unit-icon",
    html: markerHtml(unit, serverNow, selected),
    iconSize: [28, 28],
    iconAnchor: [14, 14],
  });
}

export { escape };
