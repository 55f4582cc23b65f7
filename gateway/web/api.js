// The gateway's HTTP API: JSON in and out, the session cookie, the CSRF header on every
// change, and the one error body {"error": {"code", "message"}} turned into an ApiError.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = { user: null, role: null, permissions: new Set(), csrf: null };

export function can(permission) {
  return session.permissions.has(permission);
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(resp.status, err.code || "http_error", err.message || `HTTP ${resp.status}`);
  }
  return data;
}

const ALL = ["view", "dispatch", "lock", "users", "device", "units"];

// Who is logged in: {user, role, permissions}. Before the gateway had logins (no
// /me), the API was open to all, and so is the page.
export async function whoAmI() {
  try {
    setSession(await api("GET", "/me"));
    return true;
  } catch (err) {
    if (err.status === 404) {
      setSession({ user: null, role: "open", permissions: ALL, csrf: null });
      return true;
    }
    if (err.status === 401) return false;
    throw err;
  }
}

export async function login(username, password) {
  const me = await api("POST", "/login", { username, password });
  setSession(me);
  if (!me.permissions) await whoAmI();
}

export async function logout() {
  await api("POST", "/logout", {}).catch(() => {});
  setSession({ user: null, role: null, permissions: [], csrf: null });
}

function setSession(me) {
  session.user = me.user ?? null;
  session.role = me.role ?? null;
  session.permissions = new Set(me.permissions || []);
  session.csrf = me.csrf ?? null;
}
