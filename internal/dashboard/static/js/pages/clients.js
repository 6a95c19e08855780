// Clients: search by client id, username, address and state, page through
// the sessions, open one client's detail (#/clients/<id>) and kick it.
import * as api from "../api.js";
import {h, card, table, badge, num, time, run} from "../ui.js";
import {searchList} from "../list.js";

const protocols = {3: "3.1", 4: "3.1.1", 5: "5.0"};

export default function render(ctx) {
	if (ctx.params[0] !== undefined) return detail(ctx, ctx.params[0]);
	const box = card(null);
	const load = searchList(ctx, box, {
		path: "/clients", id: "clients",
		search: [["client_id", "Client ID"], ["username", "Username"], ["address", "Address"]],
		controls: (set) => h("select", {name: "connected", id: "clients-connected", onchange: (ev) => set("connected", ev.target.value)},
			h("option", {value: ""}, "All states"), h("option", {value: "true"}, "Connected"), h("option", {value: "false"}, "Disconnected")),
		empty: "No client matches.",
		columns: [
			{title: "Client ID", class: "wrap", value: (c) => h("a", {href: "#/clients/" + api.seg(c.client_id), class: "client-link"}, c.client_id)},
			{title: "Username", value: (c) => c.username || h("span", {class: "muted"}, "–")},
			{title: "Address", value: (c) => h("span", {class: "mono"}, c.address || "–")},
			{title: "Protocol", value: (c) => "MQTT " + (protocols[c.proto_version] || c.proto_version)},
			{title: "State", value: (c) => stateBadge(c)},
			{title: "Subs", class: "num", value: (c) => num(c.subscriptions)},
			{title: "Inflight", class: "num", value: (c) => num(c.inflight)},
			{title: "Queued", class: "num", value: (c) => num(c.queued)},
			{title: "Node", value: (c) => c.node},
			{title: "", class: "actions", value: (c) => kickButton(ctx, c, () => load(true))},
		],
	});
	ctx.root.append(box);
}

function stateBadge(c) {
	if (c.connected) return badge("connected", "ok");
	return h("span", {title: c.disconnected_at ? "since " + time(c.disconnected_at) : ""}, badge("disconnected"));
}

function kickButton(ctx, c, after) {
	if (!ctx.canWrite || !c.connected) return null;
	return h("button", {class: "btn small danger kick", "data-client": c.client_id, onclick: () => run(() => api.post(`/clients/${api.seg(c.client_id)}/kick`), {
		question: ["Kick client", `Disconnect ${c.client_id}? Its session stays, subject to its expiry; the client may reconnect.`, "Kick"],
		done: `${c.client_id} disconnected`, after})}, "Kick");
}

function detail(ctx, id) {
	ctx.titleEl.textContent = "Client " + id;
	const box = h("div", {id: "client-detail"});
	ctx.root.append(h("p", {class: "back"}, h("a", {href: "#/clients"}, "← All clients")), box);
	const load = async () => {
		let c;
		try {
			c = await api.get("/clients/" + api.seg(id));
		} catch (e) {
			if (e.status !== 404) throw e;
			box.replaceChildren(h("div", {class: "alert info"}, `No session with client ID ${id} (it disconnected and its session ended).`));
			return;
		}
		const row = (k, v) => [h("dt", null, k), h("dd", null, v)];
		box.replaceChildren(
			h("div", {class: "grid two"},
				card([h("h2", null, "Connection"), kickButton(ctx, c, load)], h("dl", {class: "props"},
					row("Client ID", h("span", {class: "mono"}, c.client_id)),
					row("State", stateBadge(c)),
					row("Username", c.username || "–"),
					row("Identity", c.owner || "–"),
					row("Address", h("span", {class: "mono"}, c.address || "–")),
					row("Listener", c.listener || "–"),
					row("Protocol", "MQTT " + (protocols[c.proto_version] || c.proto_version)),
					row("Node", c.node),
					c.connected ? null : row("Disconnected at", time(c.disconnected_at)))),
				card("Session", h("dl", {class: "props"},
					row("Persistent", c.persistent ? `yes, expires ${c.session_expiry_seconds} s after disconnect` : "no (ends with the connection)"),
					row("In flight", `${num(c.inflight)} of ${num(c.inflight_max)}`),
					row("Queued", `${num(c.queued)} of ${num(c.queue_max)} messages`),
					row("Queued bytes", `${num(c.queued_bytes)}` + (c.queue_max_bytes ? ` of ${num(c.queue_max_bytes)}` : "")),
					row("Subscriptions", num(c.subscriptions))))),
			card("Subscriptions", table([
				{title: "Topic filter", class: "wrap mono", value: (s) => s.topic},
				{title: "Share group", value: (s) => s.share_group || "–"},
				{title: "QoS", class: "num", value: (s) => s.qos},
				{title: "No local", value: (s) => (s.no_local ? "yes" : "no")},
				{title: "Retain as published", value: (s) => (s.retain_as_published ? "yes" : "no")},
				{title: "Retain handling", class: "num", value: (s) => s.retain_handling},
				{title: "Subscription ID", class: "num", value: (s) => s.subscription_id || "–"},
			], c.subscription_list || [], "No subscriptions.")));
	};
	ctx.every(5000, load);
}
