// The REST API client of the dashboard: every request goes to /api/v1 with
// the session cookie; changing requests carry the CSRF token the login
// returned. Errors arrive as JSON {code, message} and are thrown as ApiError.
// The endpoint paths are those of internal/admin/openapi.json.

const base = "/api/v1";
let csrf = "";

export class ApiError extends Error {
	constructor(status, code, message) {
		super(message || code || `HTTP ${status}`);
		this.status = status;
		this.code = code || "";
	}
}

// Listeners for an expired session (401) and for the forced password change.
const listeners = {unauthorized: [], passwordChange: []};
export function on(event, fn) { listeners[event].push(fn); }

export function setCSRF(token) { csrf = token || ""; }

export async function request(method, path, body) {
	const headers = {Accept: "application/json"};
	if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
	if (body !== undefined) headers["Content-Type"] = "application/json";
	const res = await fetch(base + path, {method, headers, credentials: "same-origin",
		body: body === undefined ? undefined : JSON.stringify(body)});
	const text = await res.text();
	let data = null;
	if (text) {
		try { data = JSON.parse(text); } catch { data = {message: text}; }
	}
	if (!res.ok) {
		const err = data && (data.error || data);
		const e = new ApiError(res.status, err && err.code, err && err.message);
		if (res.status === 401 && !path.startsWith("/auth/login")) listeners.unauthorized.forEach((f) => f(e));
		if (res.status === 403 && e.code === "password_change_required") listeners.passwordChange.forEach((f) => f(e));
		throw e;
	}
	return data;
}

export const get = (p) => request("GET", p);
export const post = (p, b) => request("POST", p, b === undefined ? {} : b);
export const put = (p, b) => request("PUT", p, b);
export const del = (p) => request("DELETE", p);

// q builds a query string from the non-empty values of obj.
export function q(obj) {
	const s = new URLSearchParams();
	for (const [k, v] of Object.entries(obj)) if (v !== "" && v != null) s.set(k, v);
	const str = s.toString();
	return str ? "?" + str : "";
}

// seg escapes one path segment (client ids and topics may hold "/", "#", "?").
export const seg = (s) => encodeURIComponent(s);
