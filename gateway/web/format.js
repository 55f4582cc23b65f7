// Times in the centre's zone (WIB, UTC+7, in Palangka Raya; the gateway says which in
// /api/v1/map-config) whatever the browser's zone; ages and distances for a glance.

const zone = { name: "UTC", offset_s: 0 };

export function setZone(z) {
  Object.assign(zone, z);
}

// Unix seconds -> "14:02:11 WIB"
export function wib(unixSeconds, withZone = true) {
  if (unixSeconds == null) return "—";
  const hms = new Date((unixSeconds + zone.offset_s) * 1000).toISOString().slice(11, 19);
  return withZone ? `${hms} ${zone.name}` : hms;
}

// Unix seconds -> "2026-11-28 14:02 WIB" when not today (in the zone), else the time alone.
export function wibWhen(unixSeconds, nowSeconds) {
  if (unixSeconds == null) return "—";
  const day = (s) => new Date((s + zone.offset_s) * 1000).toISOString().slice(0, 10);
  return day(unixSeconds) === day(nowSeconds) ? wib(unixSeconds) : `${day(unixSeconds)} ${wib(unixSeconds)}`;
}

// seconds -> "12 s", "3 m", "2 h 5 m"
export function age(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
}

export function distance(metres) {
  return metres < 1000 ? `${Math.round(metres)} m` : `${(metres / 1000).toFixed(1)} km`;
}

// A vehicle's supply voltage (telemetry `supply_v`, volts) -> "12.6 V".
export function volts(v) {
  return `${v.toFixed(1)} V`;
}

// Whether a supply voltage is low. The unit does not say its vehicle's system voltage,
// the reading does: above 18 V it can only be a 24 V system (trucks, two batteries in
// series), low below 23.0 V; otherwise a 12 V system, low below 11.5 V (a battery running
// down, or a charging fault, with the engine on or off).
export function supplyLow(v) {
  return v < (v > 18 ? 23.0 : 11.5);
}
