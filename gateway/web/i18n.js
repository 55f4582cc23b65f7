// The page's words: Bahasa Indonesia by default, English by the switch (kept in
// localStorage). Status labels come from the gateway's status scheme.

const STRINGS = {
  id: {
    help: "Bantuan (?)", logout: "Keluar", login: "Masuk", login_title: "Masuk ke Siaga",
    username: "Nama pengguna", password: "Kata sandi", close: "Tutup",
    search: "Cari unit… (/)", all_kinds: "Semua jenis", all_agencies: "Semua instansi",
    all_availabilities: "Semua ketersediaan", sort_by: "Urut:", show_decommissioned: "Tampilkan unit nonaktif",
    col_callsign: "Tanda panggil", col_kind: "Jenis", col_availability: "Ketersediaan", col_age: "Umur posisi",
    counts: "{shown} dari {total} unit",
    stream_ok: "Langsung", stream_lost: "Aliran data terputus, menyambung ulang…", stream_connecting: "Menyambung…",
    tiles_down: "Peta dasar tidak tersedia: unit tetap tampil di latar polos",
    demo_map: "Peta demo: kota sintetis, bukan jalan sebenarnya",
    demo_map_credit: "Peta demo Siaga (kota sintetis, bukan data OpenStreetMap)",
    basemap_offline: "Peta offline", basemap_demo: "Peta demo", basemap_online: "Peta online",
    incident: "Kejadian", incident_hint: "Klik peta atau ketik koordinat, pilih jenis kejadian.",
    lat: "Lintang", lon: "Bujur", incident_kind: "Jenis kejadian", note: "Catatan",
    find_nearest: "Cari unit terdekat", new_incident: "Kejadian baru (n)",
    ik_fire: "Kebakaran", ik_traffic_accident: "Kecelakaan lalu lintas", ik_medical: "Medis",
    ik_security: "Keamanan", ik_other: "Lainnya",
    assign: "Tugaskan", assigned_wait: "{unit} ditugaskan, menunggu konfirmasi kru…",
    assigned_acked: "{unit}: kru mengonfirmasi (menuju lokasi)", no_nearest: "Tidak ada unit siaga yang sesuai.",
    pick_point: "Klik peta untuk menandai lokasi kejadian.", bad_coords: "Koordinat tidak valid.",
    distance: "jarak", pos_age: "posisi",
    eta: "{min} mnt", road_km: "{km} km jalan", straight: "garis lurus",
    straight_title: "Tanpa waktu tempuh jalan: diurutkan menurut jarak garis lurus",
    show_route: "Tampilkan rute", no_longer_available: "tidak siaga lagi",
    override_ask: "{unit} tidak siaga ({availability}). Tetap tugaskan? Alasan wajib diisi.",
    override_reason: "Alasan menugaskan unit yang tidak siaga", override_confirm: "Tetap tugaskan", cancel: "Batal",
    data_old: "Data lama sejak {time}: aliran data terputus, daftar dan peta tidak terbaru",
    history: "Riwayat status", device: "Kesehatan perangkat",
    f_availability: "Ketersediaan", f_status: "Status", f_since: "sejak", f_source: "oleh",
    f_flags: "Tanda", f_position: "Posisi", f_assignment: "Penugasan", f_overridden: "Ditimpa",
    f_emergency: "Darurat", f_link: "Koneksi", f_last_seen: "Terakhir terdengar", f_agency: "Instansi",
    f_decommissioned: "Dinonaktifkan",
    src_crew: "kru", src_dispatcher: "dispatcher",
    set_status: "Ubah status", reason: "Alasan", apply: "Terapkan", release: "Lepas penugasan",
    lock: "Kunci status", unlock: "Buka kunci", clear_emergency: "Akhiri darurat",
    degraded: "Gateway bermasalah ({why}): peta mungkin tidak terbaru", gateway_silent: "gateway tidak menjawab",
    gateway_moving: "Gateway {from} tidak menjawab; pindah ke {to}…",
    gateway_moved: "Gateway {from} tidak menjawab; pindah ke {to}",
    gateway_none: "Gateway {from} tidak menjawab, gateway lain juga tidak; mencoba lagi…",
    ack: "Terima", emergency_banner: "DARURAT: {unit} sejak {time}", emergency_acked: "diterima oleh {user}",
    acked_by: "diterima oleh {user} {time}",
    no_position: "tanpa posisi", moving: "bergerak", stopped: "berhenti", track_points: "{n} titik jejak 1 jam",
    reason_required: "Alasan wajib diisi.", done: "Selesai.",
    sound_blocked: "Klik di halaman untuk menyalakan suara alarm.",
    dev_fw: "Firmware", dev_board: "Papan", dev_reset: "Alasan boot terakhir", dev_boot: "Boot ke-",
    dev_cfg: "Versi pengaturan", dev_signal: "Sinyal", dev_network: "Jaringan", dev_backlog: "Antrean data",
    dev_flash: "Flash kosong", dev_heap: "Memori kosong", dev_tele_at: "Telemetri terakhir", dev_sats: "Satelit / HDOP",
    dev_dropped: "Data dibuang", dev_supply: "Tegangan aki", supply_low: "tegangan rendah", none: "—",
    shortcuts: "Pintasan papan ketik",
    k_search: "cari unit", k_new: "kejadian baru (klik peta)", k_assign: "tugaskan unit terpilih ke kejadian",
    k_ack: "terima darurat tertua", k_esc: "tutup / batal", k_help: "bantuan ini", k_lang: "ganti bahasa",
    k_next: "unit berikut / sebelumnya di daftar",
    role_open: "akses terbuka", legend: "Legenda",
    av_available: "Siaga", av_assigned: "Ditugaskan", av_busy: "Sibuk", av_out_of_service: "Tidak siaga",
    av_emergency: "Darurat", av_offline: "Luring", av_decommissioned: "Dinonaktifkan", stale: "posisi usang",
    kind_ambulance: "Ambulans", kind_fire_truck: "Damkar", kind_rescue: "Penyelamat", kind_police: "Polisi",
    kind_other: "Lainnya",
    flag_talk_request: "minta bicara", flag_position_stale: "posisi usang", flag_assigned_no_ack: "tugas belum dikonfirmasi",
    flag_away_from_station: "jauh dari pos", flag_en_route_not_moving: "menuju lokasi tapi diam",
    flag_status_locked: "status dikunci",
  },
  en: {
    help: "Help (?)", logout: "Log out", login: "Log in", login_title: "Log in to Siaga",
    username: "User name", password: "Password", close: "Close",
    search: "Search units… (/)", all_kinds: "All kinds", all_agencies: "All agencies",
    all_availabilities: "All availabilities", sort_by: "Sort:", show_decommissioned: "Show decommissioned units",
    col_callsign: "Callsign", col_kind: "Kind", col_availability: "Availability", col_age: "Fix age",
    counts: "{shown} of {total} units",
    stream_ok: "Live", stream_lost: "Stream lost, reconnecting…", stream_connecting: "Connecting…",
    tiles_down: "Base map unavailable: units still shown on a plain background",
    demo_map: "Demo map: a synthetic town, not real streets",
    demo_map_credit: "Siaga demo map (a synthetic town, not OpenStreetMap data)",
    basemap_offline: "Offline map", basemap_demo: "Demo map", basemap_online: "Online map",
    incident: "Incident", incident_hint: "Click the map or type coordinates, then pick the incident kind.",
    lat: "Latitude", lon: "Longitude", incident_kind: "Incident kind", note: "Note",
    find_nearest: "Find nearest units", new_incident: "New incident (n)",
    ik_fire: "Fire", ik_traffic_accident: "Traffic accident", ik_medical: "Medical",
    ik_security: "Security", ik_other: "Other",
    assign: "Assign", assigned_wait: "{unit} assigned, waiting for the crew…",
    assigned_acked: "{unit}: the crew acknowledged (en route)", no_nearest: "No available unit of a fitting kind.",
    pick_point: "Click the map to mark the incident.", bad_coords: "Invalid coordinates.",
    distance: "distance", pos_age: "fix",
    eta: "{min} min", road_km: "{km} km by road", straight: "straight line",
    straight_title: "No drive time by road: ranked by straight-line distance",
    show_route: "Show the route", no_longer_available: "no longer available",
    override_ask: "{unit} is not available ({availability}). Assign anyway? A reason is required.",
    override_reason: "Why assign a unit that is not available", override_confirm: "Assign anyway", cancel: "Cancel",
    data_old: "Data old since {time}: the stream is lost, list and map are not current",
    history: "Status history", device: "Device health",
    f_availability: "Availability", f_status: "Status", f_since: "since", f_source: "by",
    f_flags: "Flags", f_position: "Position", f_assignment: "Assignment", f_overridden: "Overridden",
    f_emergency: "Emergency", f_link: "Link", f_last_seen: "Last heard", f_agency: "Agency",
    f_decommissioned: "Decommissioned",
    src_crew: "crew", src_dispatcher: "dispatcher",
    set_status: "Set status", reason: "Reason", apply: "Apply", release: "Release",
    lock: "Lock status", unlock: "Unlock", clear_emergency: "End emergency",
    degraded: "Gateway degraded ({why}): the map may be out of date", gateway_silent: "the gateway does not answer",
    gateway_moving: "Gateway {from} does not answer; moving to {to}…",
    gateway_moved: "Gateway {from} did not answer; moved to {to}",
    gateway_none: "Gateway {from} does not answer, nor does any other; trying again…",
    ack: "Acknowledge", emergency_banner: "EMERGENCY: {unit} since {time}", emergency_acked: "acknowledged by {user}",
    acked_by: "acknowledged by {user} {time}",
    no_position: "no position", moving: "moving", stopped: "stopped", track_points: "{n} track points, last hour",
    reason_required: "A reason is required.", done: "Done.",
    sound_blocked: "Click anywhere on the page to turn the alarm sound on.",
    dev_fw: "Firmware", dev_board: "Board", dev_reset: "Last boot reason", dev_boot: "Boot no.",
    dev_cfg: "Settings version", dev_signal: "Signal", dev_network: "Network", dev_backlog: "Waiting to send",
    dev_flash: "Flash free", dev_heap: "Memory free", dev_tele_at: "Last telemetry", dev_sats: "Satellites / HDOP",
    dev_dropped: "Data dropped", dev_supply: "Supply voltage", supply_low: "low voltage", none: "—",
    shortcuts: "Keyboard shortcuts",
    k_search: "search units", k_new: "new incident (click the map)", k_assign: "assign the selected unit to the incident",
    k_ack: "acknowledge the oldest emergency", k_esc: "close / cancel", k_help: "this help", k_lang: "switch language",
    k_next: "next / previous unit in the list",
    role_open: "open access", legend: "Legend",
    av_available: "Available", av_assigned: "Assigned", av_busy: "Busy", av_out_of_service: "Out of service",
    av_emergency: "Emergency", av_offline: "Offline", av_decommissioned: "Decommissioned", stale: "stale position",
    kind_ambulance: "Ambulance", kind_fire_truck: "Fire truck", kind_rescue: "Rescue", kind_police: "Police",
    kind_other: "Other",
    flag_talk_request: "request to talk", flag_position_stale: "stale position", flag_assigned_no_ack: "assignment not acknowledged",
    flag_away_from_station: "away from station", flag_en_route_not_moving: "en route, not moving",
    flag_status_locked: "status locked",
  },
};

export const LANGS = Object.keys(STRINGS);
let lang = localStorage.getItem("siaga.lang") in STRINGS ? localStorage.getItem("siaga.lang") : "id";

export function currentLang() {
  return lang;
}

export function setLang(next) {
  lang = next in STRINGS ? next : "id";
  localStorage.setItem("siaga.lang", lang);
  document.documentElement.lang = lang;
  translateStatic();
}

// t("counts", {shown: 3, total: 5}) -> "3 dari 5 unit"
export function t(key, params = {}) {
  const s = STRINGS[lang][key] ?? STRINGS.id[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
}

// A status label from the gateway's scheme, in the page's language.
export function statusLabel(status) {
  if (!status) return t("none");
  const label = lang === "en" ? status.label_en || status.label : status.label;
  return `${status.key} ${label ?? ""}`.trim();
}

export function translateStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}
