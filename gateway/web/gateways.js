// Every gateway of the centre (map-config's `gateways`, the gateway setting): when the
// page's own stops answering, the page goes to the next one that answers, the one after
// its own origin in the list, wrapping (docs/high-availability.md).
//
// What the page keeps across a reload lives in the origin's own storage (the marked
// incident in sessionStorage, the language in localStorage), which another gateway's
// origin cannot read: so it goes along in the new address's fragment (never sent to a
// server) and is taken back from there. "Waiting for the crew" is the gateway's (each
// unit's `assignment`): on gateways sharing one database it is there on the next one too.

const FROM = "siaga-from"; // the fragment's key that marks a move, and the gateway left

function originOf(address) {
  try {
    return new URL(address).origin;
  } catch (err) {
    return null;
  }
}

// The other gateways in the order to try them: those after this page's own in the
// list, then those before it; this page's own origin is left out.
export function nextGateways(list, origin = location.origin) {
  const own = list.findIndex((a) => originOf(a) === origin);
  const order = [...list.slice(own + 1), ...list.slice(0, own + 1)];
  return order.filter((a) => originOf(a) !== null && originOf(a) !== origin);
}

// Whether a gateway answers at all. The page may not read another origin's reply
// (no-cors), but the request still resolves when a server replied and fails when none did.
export async function answers(address, timeoutMs = 3000) {
  try {
    await fetch(`${address}/api/v1/health`, { mode: "no-cors", cache: "no-store", signal: AbortSignal.timeout(timeoutMs) });
    return true;
  } catch (err) {
    return false;
  }
}

// The first of the other gateways that answers, or null.
export async function firstAnswering(list) {
  for (const address of nextGateways(list)) {
    if (await answers(address)) return address;
  }
  return null;
}

// The next gateway's page, carrying `kept` ({lang, lat, lon, kind, note}) in the fragment.
export function handOverUrl(address, kept) {
  const params = new URLSearchParams({ [FROM]: location.origin });
  for (const [k, v] of Object.entries(kept)) if (v !== null && v !== undefined && v !== "") params.set(k, String(v));
  return `${address}/#${params}`;
}

// What a page that arrived from another gateway brought along, checked like any input
// from outside: {from, lang, incident: {lat, lon, kind, note} | null}, or null when it
// did not arrive so. The fragment is cleared, so a reload does not take it again.
export function takeOver() {
  const params = new URLSearchParams(location.hash.slice(1));
  const from = params.get(FROM);
  if (!from) return null;
  history.replaceState(null, "", location.pathname + location.search);
  const num = (k) => {
    const v = Number.parseFloat(params.get(k));
    return Number.isFinite(v) ? v : null;
  };
  const lat = num("lat");
  const lon = num("lon");
  const inRange = lat !== null && lon !== null && Math.abs(lat) <= 90 && Math.abs(lon) <= 180;
  return {
    from: from.slice(0, 200),
    lang: params.get("lang"),
    incident: inRange ? { lat, lon, kind: (params.get("kind") || "").slice(0, 50), note: (params.get("note") || "").slice(0, 500) } : null,
  };
}
