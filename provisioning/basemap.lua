-- Siaga's basemap (tilemaker 2.x): only what a dispatcher reads the map by.
-- Layers and fields: provisioning/basemap.json; drawn by gateway/web/basemap.js.
--   roads      kind (major, medium, minor, service, path), name, bridge
--   waterways  kind (river, canal, stream), name
--   water      name (areas: rivers drawn as areas, lakes, reservoirs)
--   buildings  (areas)
--   places     kind (city, town, village, suburb, ...), name
-- Data zooms 8..15; each feature from the zoom it helps at (the second value below).

node_keys = { "place" }

PLACES = { city = 8, town = 9, village = 11, suburb = 11, hamlet = 13, quarter = 13, neighbourhood = 14 }

ROADS = {
  motorway = { "major", 8 }, trunk = { "major", 8 }, primary = { "major", 9 },
  motorway_link = { "major", 12 }, trunk_link = { "major", 12 }, primary_link = { "major", 12 },
  secondary = { "medium", 10 }, secondary_link = { "medium", 12 },
  tertiary = { "medium", 11 }, tertiary_link = { "medium", 12 },
  residential = { "minor", 12 }, unclassified = { "minor", 12 }, living_street = { "minor", 12 },
  road = { "minor", 12 }, service = { "service", 13 }, track = { "path", 13 },
  pedestrian = { "path", 13 }, footway = { "path", 14 }, path = { "path", 14 }, cycleway = { "path", 14 },
}

WATERWAYS = { river = 8, canal = 11, stream = 13, drain = 14, ditch = 14 }
WATER_AREAS = { water = true, riverbank = true, reservoir = true, basin = true }

function node_function(node)
  local minzoom = PLACES[node:Find("place")]
  local name = node:Find("name")
  if minzoom and name ~= "" then
    node:Layer("places", false)
    node:Attribute("kind", node:Find("place"))
    node:Attribute("name", name)
    node:MinZoom(minzoom)
  end
end

function way_function(way)
  local highway, waterway = way:Find("highway"), way:Find("waterway")
  local road = ROADS[highway]
  if road and way:Find("area") ~= "yes" then
    way:Layer("roads", false)
    way:Attribute("kind", road[1])
    way:MinZoom(road[2])
    if way:Find("name") ~= "" then way:Attribute("name", way:Find("name")) end
    if way:Find("bridge") ~= "" and way:Find("bridge") ~= "no" then way:AttributeBoolean("bridge", true) end
    return
  end
  if WATERWAYS[waterway] and not way:IsClosed() then
    way:Layer("waterways", false)
    way:Attribute("kind", waterway == "river" and "river" or (waterway == "canal" and "canal" or "stream"))
    way:MinZoom(WATERWAYS[waterway])
    if way:Find("name") ~= "" then way:Attribute("name", way:Find("name")) end
    return
  end
  if way:IsClosed() or way:Find("type") == "multipolygon" then
    if WATER_AREAS[way:Find("natural")] or WATER_AREAS[waterway] or WATER_AREAS[way:Find("landuse")] then
      way:Layer("water", true)
      if way:Find("name") ~= "" then way:Attribute("name", way:Find("name")) end
      return
    end
    if way:Find("building") ~= "" and way:Find("building") ~= "no" then
      way:Layer("buildings", true)
    end
  end
end
