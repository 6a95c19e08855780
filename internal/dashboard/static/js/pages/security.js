// Security: the device users of the users file, the ACL rules in force with
// a reload, and the bans (manual and after failed logins).
import * as api from "../api.js";
import {h, table, badge, time, run, form} from "../ui.js";
import {tabs} from "../tabs.js";

export default function render(ctx) {
	tabs(ctx, "security", [
		{id: "users", label: "Users", render: users},
		{id: "acl", label: "ACL", render: acl},
		{id: "bans", label: "Bans", render: bans},
	]);
}

const input = (name, type = "text", extra) => h("input", {name, type, ...extra});

function users(ctx, body) {
	const list = h("div", {id: "users-table"});
	const addButton = ctx.canWrite ? h("button", {class: "btn primary", id: "user-add", onclick: () => add()}, "Add user") : null;
	const load = async () => {
		// Without a users file the /users routes answer 409: ask first.
		const {users_file: file} = await api.get("/acl");
		addButton?.classList.toggle("hidden", !file);
		if (!file) {
			list.replaceChildren(h("div", {class: "alert info"}, "No users file is configured (auth.users_file): devices are not checked against one."));
			return;
		}
		const us = await api.get("/users");
		list.replaceChildren(table([
			{title: "Username", value: (u) => h("strong", null, u.username)},
			{title: "Superuser", value: (u) => (u.superuser ? badge("superuser", "warn") : "no")},
			{title: "Hash", value: (u) => u.hash},
			{title: "SCRAM", value: (u) => (u.scram ? "yes" : "no")},
			{title: "", class: "actions", value: (u) => (ctx.canWrite ? [
				h("button", {class: "btn small", onclick: async () => {
					const v = await form(`Change ${u.username}`, [
						["password", "New password (empty: unchanged)", input("password", "password", {autocomplete: "new-password", maxlength: 72})],
						["superuser", "Superuser (bypasses the ACL)", input("superuser", "checkbox", {checked: u.superuser})]], "Save");
					if (!v) return;
					const change = {superuser: v.superuser};
					if (v.password) change.password = v.password;
					run(() => api.put("/users/" + api.seg(u.username), change), {done: `${u.username} changed; its clients were disconnected`, after: load});
				}}, "Edit"),
				h("button", {class: "btn small danger", onclick: () => run(() => api.del("/users/" + api.seg(u.username)), {
					question: ["Remove user", `Remove ${u.username} from the users file? Its clients are disconnected.`, "Remove"],
					done: `${u.username} removed`, after: load})}, "Remove"),
			] : null)},
		], us, "The users file has no users."));
	};
	const add = async () => {
		const v = await form("Add device user", [
			["username", "Username", input("username", "text", {required: true})],
			["password", "Password", input("password", "password", {required: true, autocomplete: "new-password", maxlength: 72})],
			["superuser", "Superuser (bypasses the ACL)", input("superuser", "checkbox")],
			["scram", "Also store SCRAM credentials (MQTT 5 enhanced authentication)", input("scram", "checkbox")]], "Add");
		if (v) run(() => api.post("/users", v), {done: `${v.username} added`, after: load});
	};
	body.append(h("div", {class: "toolbar"}, h("span", {class: "grow muted"}, "Devices log in with these users (auth.users_file)."),
		addButton), list);
	ctx.every(10000, load);
}

function acl(ctx, body) {
	const head = h("div");
	const list = h("div", {id: "acl-table"});
	const show = (a) => {
		head.replaceChildren(h("dl", {class: "props"},
			h("dt", null, "File"), h("dd", {class: "mono"}, a.file || "none (auth.acl_file not set)"),
			h("dt", null, "When no rule matches"), h("dd", null, badge(a.default, a.default === "allow" ? "ok" : "bad")),
			h("dt", null, "$SYS topics"), h("dd", null, a.sys_superuser_only ? "superusers only" : "as the rules say")));
		list.replaceChildren(table([
			{title: "#", class: "num", value: (r) => a.rules.indexOf(r) + 1},
			{title: "Permission", value: (r) => badge(r.permission, r.permission === "allow" ? "ok" : "bad")},
			{title: "Action", value: (r) => r.action},
			{title: "Topic", class: "mono wrap", value: (r) => r.topic},
			{title: "Applies to", value: (r) => (r.scope === "all" ? "everyone" : r.scope === "anonymous" ? "anonymous clients" : `${r.scope} ${r.name}`)},
		], a.rules || [], "No rules."));
	};
	const load = async () => show(await api.get("/acl"));
	body.append(h("div", {class: "toolbar"}, h("span", {class: "grow muted"}, "Rules in the order they are checked; the first match decides."),
		ctx.canWrite ? h("button", {class: "btn", id: "acl-reload", onclick: () => run(async () => show(await api.post("/acl/reload")),
			{done: "Users and ACL files reloaded"})}, "Reload files") : null), head, h("div", {style: {"margin-top": "14px"}}, list));
	ctx.every(10000, load);
}

function bans(ctx, body) {
	const list = h("div", {id: "bans-table"});
	const load = async () => {
		const bs = await api.get("/bans");
		list.replaceChildren(table([
			{title: "Kind", value: (b) => b.kind.replace("_", " ")},
			{title: "Value", class: "mono wrap", value: (b) => b.value},
			{title: "Source", value: (b) => (b.source === "manual" ? "manual" : badge(b.node ? "failed logins on " + b.node : "failed logins", "warn"))},
			{title: "Reason", value: (b) => b.reason || "–"},
			{title: "Since", value: (b) => time(b.created_at)},
			{title: "Until", value: (b) => (b.until ? time(b.until) : "lifted by hand")},
			{title: "", class: "actions", value: (b) => (ctx.canWrite ? h("button", {class: "btn small", onclick: () =>
				run(() => api.del(`/bans/${api.seg(b.kind)}/${api.seg(b.value)}`), {done: "Ban lifted", after: load})}, "Lift") : null)},
		], bs, "Nobody is banned."));
	};
	const add = async () => {
		const kind = h("select", {name: "kind"}, h("option", {value: "client_id"}, "Client ID"), h("option", {value: "username"}, "Username"), h("option", {value: "address"}, "Address (IPv4, or IPv6 /64)"));
		const v = await form("Ban", [
			["kind", "Ban by", kind],
			["value", "Value", input("value", "text", {required: true})],
			["reason", "Reason", input("reason")],
			["duration", "Duration in seconds (empty: until lifted)", input("duration", "number", {min: 0})]], "Ban");
		if (!v) return;
		const ban = {kind: v.kind, value: v.value, reason: v.reason};
		if (v.duration) ban.duration_seconds = Number(v.duration);
		run(() => api.post("/bans", ban), {done: `Banned; matching clients were disconnected`, after: load});
	};
	body.append(h("div", {class: "toolbar"}, h("span", {class: "grow muted"}, "Banned clients are refused at CONNECT; a new ban disconnects those it matches."),
		ctx.canWrite ? h("button", {class: "btn primary", id: "ban-add", onclick: add}, "Add ban") : null), list);
	ctx.every(10000, load);
}
