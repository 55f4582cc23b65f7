// The base map under the units (docs/map.md): the offline archive the gateway serves
// (an OSM extract imported with `siaga map import`, drawn by protomaps-leaflet, the
// global `protomapsL`, in a calm light style), an online XYZ source (the `tiles_url`
// setting), both (the offline one first, a switch between them), or none.
//
// The style keeps the units readable: pale ground, white streets with soft casings,
// muted water, buildings barely darker than the ground, grey labels with a white halo;
// bridges have a dark casing, since the river crossings decide a route here.
// The markers are the only saturated colours on the map. Layers and fields are those of
// provisioning/basemap.lua; its data zooms are shown one level up (protomaps-leaflet
// draws 512-pixel tiles), so data zoom 15 is native to display zoom 16 and drawn sharp
// (vector) beyond.

import { t } from "./i18n.js";

export const COLOURS = {
  ground: "#f3f1ec",
  water: "#b9d3e6",
  waterText: "#4d7799",
  building: "#e3ded5",
  buildingLine: "#d3ccc0",
  major: "#faf0cc",
  majorCasing: "#d9c690",
  street: "#ffffff",
  casing: "#d3cdc2",
  bridge: "#8c8375", // a bridge's casing: the few river crossings stand out
  path: "#c4baa9",
  text: "#4a4f55",
  halo: "#ffffff",
};

const lin = (stops) => (z) => {
  if (z <= stops[0][0]) return stops[0][1];
  for (let i = 1; i < stops.length; i++) {
    const [z1, w1] = stops[i];
    const [z0, w0] = stops[i - 1];
    if (z <= z1) return w0 + ((w1 - w0) * (z - z0)) / (z1 - z0);
  }
  return stops[stops.length - 1][1];
};

// Road widths in pixels by display zoom, by the `kind` basemap.lua gives.
const WIDTH = {
  major: lin([[9, 1.2], [13, 4], [16, 11], [18, 24]]),
  medium: lin([[10, 0.8], [13, 3], [16, 9], [18, 20]]),
  minor: lin([[13, 0.8], [14, 2], [16, 6], [18, 14]]),
  service: lin([[14, 0.6], [16, 3], [18, 7]]),
};
const kind = (k) => (z, f) => f.props.kind === k;

function paintRules(P) {
  const rules = [
    { dataLayer: "water", symbolizer: new P.PolygonSymbolizer({ fill: COLOURS.water }) },
    {
      dataLayer: "waterways",
      symbolizer: new P.LineSymbolizer({
        color: COLOURS.water,
        width: (z, f) => (f.props.kind === "river" ? lin([[9, 1], [13, 2.5], [16, 6]])(z) : 1.2),
        lineCap: "round",
      }),
    },
    {
      dataLayer: "buildings",
      symbolizer: new P.PolygonSymbolizer({ fill: COLOURS.building, stroke: COLOURS.buildingLine, width: 0.6 }),
    },
    {
      dataLayer: "roads",
      filter: kind("path"),
      minzoom: 15,
      symbolizer: new P.LineSymbolizer({ color: COLOURS.path, width: 1, dash: [3, 2] }),
    },
  ];
  // the casings of every class first, then the streets themselves on top
  for (const k of ["service", "minor", "medium", "major"]) {
    const casing = k === "major" ? COLOURS.majorCasing : COLOURS.casing;
    rules.push({
      dataLayer: "roads",
      filter: kind(k),
      symbolizer: new P.LineSymbolizer({
        color: (z, f) => (f.props.bridge ? COLOURS.bridge : casing),
        width: (z, f) => WIDTH[k](z) + (f.props.bridge ? 3 : 1.5),
        lineCap: "butt",
      }),
    });
  }
  for (const k of ["service", "minor", "medium", "major"]) {
    const fill = k === "major" ? COLOURS.major : COLOURS.street;
    rules.push({
      dataLayer: "roads",
      filter: kind(k),
      symbolizer: new P.LineSymbolizer({ color: fill, width: WIDTH[k], lineCap: "round" }),
    });
  }
  return rules;
}

function labelRules(P) {
  const halo = { stroke: COLOURS.halo, width: 2.5 };
  const PLACE_SIZE = { city: 16, town: 15, village: 13, suburb: 13 };
  return [
    {
      dataLayer: "places",
      symbolizer: new P.CenteredTextSymbolizer({
        ...halo,
        width: 3,
        fill: "#3b4046",
        font: (z, f) => `600 ${PLACE_SIZE[f.props.kind] || 12}px sans-serif`,
      }),
    },
    {
      dataLayer: "waterways",
      minzoom: 12,
      symbolizer: new P.LineLabelSymbolizer({ ...halo, fill: COLOURS.waterText, font: "italic 500 12px sans-serif" }),
    },
    {
      dataLayer: "water",
      minzoom: 13,
      symbolizer: new P.CenteredTextSymbolizer({ ...halo, fill: COLOURS.waterText, font: "italic 500 12px sans-serif" }),
    },
    {
      dataLayer: "roads",
      minzoom: 13,
      filter: (z, f) => f.props.kind === "major" || f.props.kind === "medium" || z >= 15,
      symbolizer: new P.LineLabelSymbolizer({
        ...halo,
        fill: COLOURS.text,
        font: (z) => `500 ${z >= 17 ? 13 : 11}px sans-serif`,
        position: P.LineLabelPlacement.Center,
      }),
    },
  ];
}

// What the map's credit says: the archive's source when it is OSM's; a demo map is
// the demo's own synthetic town and credits no one but says what it is.
function credit(basemap) {
  return basemap.demo ? t("demo_map_credit") : basemap.attribution;
}

// [{kind, label, layer}] in order of preference; `onState(up)` hears whether a base map
// shows (false when the offline archive cannot be read or no online tile loads).
export function baseLayers(config, onState) {
  const out = [];
  const P = window.protomapsL;
  if (config.basemap && P) {
    const b = config.basemap;
    const layer = P.leafletLayer({
      url: b.url,
      paintRules: paintRules(P),
      labelRules: labelRules(P),
      backgroundColor: COLOURS.ground,
      maxDataZoom: b.max_zoom,
      maxZoom: 19,
      attribution: credit(b),
    });
    layer.on("add", () => checkArchive(b.url, onState));
    out.push({ kind: "offline", label: () => t(b.demo ? "basemap_demo" : "basemap_offline"), layer, basemap: b });
  }
  if (config.tiles_url) {
    let loaded = 0;
    const layer = L.tileLayer(config.tiles_url, { attribution: config.tiles_attribution, maxZoom: 19 });
    layer.on("tileload", () => {
      loaded += 1;
      onState(true);
    });
    layer.on("tileerror", () => {
      if (!loaded) onState(false);
    });
    out.push({ kind: "online", label: () => t("basemap_online"), layer });
  }
  return out;
}

// The archive's first bytes ("PMTiles"): a map-config may name an archive that a
// failed import or a full disk made unreadable since.
async function checkArchive(url, onState) {
  try {
    const resp = await fetch(url, { headers: { Range: "bytes=0-6" } });
    onState(resp.status === 206 && (await resp.text()) === "PMTiles");
  } catch (err) {
    onState(false);
  }
}

// Put the first base layer on `map`, a switch when there are two; `onShown(entry)` hears
// which one shows, now and at each switch. Returns a function that redoes the words
// (the language switch).
export function showBaseLayers(map, layers, onShown) {
  if (!layers.length) return () => {};
  layers[0].layer.addTo(map);
  onShown(layers[0]);
  map.on("baselayerchange", (e) => {
    const shown = layers.find((l) => l.layer === e.layer);
    if (shown) onShown(shown);
  });
  let control = null;
  const words = () => {
    if (control) control.remove();
    if (layers.length > 1) {
      const named = Object.fromEntries(layers.map((l) => [l.label(), l.layer]));
      control = L.control.layers(named, null, { position: "topright", collapsed: false });
      control.addTo(map);
    }
    for (const l of layers) {
      if (!l.basemap) continue;
      const before = l.layer.options.attribution;
      l.layer.options.attribution = credit(l.basemap);
      if (map.hasLayer(l.layer) && map.attributionControl) {
        map.attributionControl.removeAttribution(before).addAttribution(l.layer.options.attribution);
      }
    }
  };
  words();
  return words;
}
