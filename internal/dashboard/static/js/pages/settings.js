// Settings: dashboard accounts and API keys (admins), the caller's own
// password, and the running configuration with secrets redacted.
import * as api from "../api.js";
import {h, table, badge, time, run, form, dialog, toast, field} from "../ui.js";
import {tabs} from "../tabs.js";

export default function render(ctx) {
	const list = [
		{id: "accounts", label: "Dashboard users", render: accounts, admin: true},
		{id: "api-keys", label: "API keys", render: apiKeys, admin: true},
		{id: "password", label: "My password", render: password},
		{id: "config", label: "Configuration", render: config},
	];
	tabs(ctx, "settings", list.filter((t) => ctx.canWrite || !t.admin));
}

const role = () => h("select", {name: "role"}, h("option", {value: "viewer"}, "viewer (read only)"), h("option", {value: "admin"}, "admin"));
const pw = (name) => h("input", {name, type: "password", autocomplete: "new-password", minlength: 8, maxlength: 72});

function accounts(ctx, body) {
	const list = h("div", {id: "accounts-table"});
	const load = async () => {
		const as = await api.get("/accounts");
		list.replaceChildren(table([
			{title: "Username", value: (a) => [h("strong", null, a.username), a.username === ctx.user.username ? h("span", {class: "muted"}, " (you)") : null]},
			{title: "Role", value: (a) => badge(a.role, a.role === "admin" ? "ok" : null)},
			{title: "Password", value: (a) => (a.must_change_password ? badge("must be changed", "warn") : "set")},
			{title: "Created", value: (a) => time(a.created_at)},
			{title: "", class: "actions", value: (a) => [
				h("button", {class: "btn small", onclick: async () => {
					const r = role();
					r.value = a.role;
					const v = await form(`Change ${a.username}`, [["role", "Role", r], ["password", "New password (empty: unchanged; ends its sessions)", pw("password")]], "Save");
					if (!v) return;
					const change = {role: v.role};
					if (v.password) change.password = v.password;
					run(() => api.put("/accounts/" + api.seg(a.username), change), {done: `${a.username} changed`, after: load});
				}}, "Edit"),
				a.username === ctx.user.username ? null : h("button", {class: "btn small danger", onclick: () => run(() => api.del("/accounts/" + api.seg(a.username)), {
					question: ["Remove dashboard user", `Remove ${a.username}? Its sessions end.`, "Remove"], done: `${a.username} removed`, after: load})}, "Remove"),
			]},
		], as));
	};
	const add = async () => {
		const p = pw("password");
		p.required = true;
		const v = await form("Add dashboard user", [["username", "Username", h("input", {name: "username", required: true})], ["password", "Password (8 to 72 characters)", p], ["role", "Role", role()]], "Add");
		if (v) run(() => api.post("/accounts", v), {done: `${v.username} added`, after: load});
	};
	body.append(h("div", {class: "toolbar"}, h("span", {class: "grow muted"}, "People who log in to this dashboard. Viewers can look but not change anything."),
		h("button", {class: "btn primary", id: "account-add", onclick: add}, "Add user")), list);
	ctx.every(10000, load);
}

function apiKeys(ctx, body) {
	const list = h("div", {id: "api-keys-table"});
	const load = async () => {
		const ks = await api.get("/api-keys");
		list.replaceChildren(table([
			{title: "Name", value: (k) => h("strong", null, k.name)},
			{title: "Key ID", class: "mono", value: (k) => k.id},
			{title: "Role", value: (k) => badge(k.role, k.role === "admin" ? "ok" : null)},
			{title: "Created", value: (k) => `${time(k.created_at)} by ${k.created_by || "–"}`},
			{title: "Last used", value: (k) => (k.last_used_at ? time(k.last_used_at) : "never")},
			{title: "", class: "actions", value: (k) => h("button", {class: "btn small danger", onclick: () => run(() => api.del("/api-keys/" + api.seg(k.id)), {
				question: ["Revoke API key", `Revoke ${k.name} (${k.id})? Scripts using it get 401 from now on.`, "Revoke"], done: "Key revoked", after: load})}, "Revoke")},
		], ks, "No API keys yet."));
	};
	const add = async () => {
		const v = await form("Create API key", [["name", "Name (what uses it)", h("input", {name: "name", required: true})], ["role", "Role", role()]], "Create");
		if (!v) return;
		try {
			const k = await api.post("/api-keys", v);
			await dialog("API key created", [
				h("p", null, "Copy the key now: its secret is not shown again. Scripts send it as ", h("code", null, "Authorization: Bearer <key>"),
					"; culex ctl reads it from ", h("code", null, "CULEX_API_KEY"), "."),
				h("pre", {class: "block", id: "api-key-secret"}, k.key)], [], "Done");
		} catch (e) {
			toast(e.message, "error");
		}
		load();
	};
	body.append(h("div", {class: "toolbar"}, h("span", {class: "grow muted"}, "Keys for scripts and culex ctl: the same API as this dashboard, without a login."),
		h("button", {class: "btn primary", id: "api-key-add", onclick: add}, "Create key")), list);
	ctx.every(10000, load);
}

function password(ctx, body) {
	const old = h("input", {name: "old_password", type: "password", autocomplete: "current-password", required: true});
	const nw = pw("new_password");
	const again = pw("confirm");
	nw.required = again.required = true;
	const f = h("form", {class: "narrow", onsubmit: async (ev) => {
		ev.preventDefault();
		if (nw.value !== again.value) return toast("The two new passwords differ.", "error");
		run(async () => {
			const me = await api.post("/me/password", {old_password: old.value, new_password: nw.value});
			if (me.csrf_token) api.setCSRF(me.csrf_token);
			f.reset();
		}, {done: "Password changed; your other sessions ended"});
	}}, field("Current password", old), field("New password (8 to 72 characters)", nw), field("Repeat the new password", again),
	h("button", {class: "btn primary", type: "submit"}, "Change password"));
	body.append(f);
}

function config(ctx, body) {
	const pre = h("pre", {class: "block", id: "config-view"});
	body.append(h("p", {class: "muted"}, "The configuration this node runs with (file, flags and CULEX_* variables merged); passwords and secrets are redacted."), pre);
	ctx.every(30000, async () => { pre.textContent = JSON.stringify(await api.get("/config"), null, 2); });
}
