// Cluster: every node with its state, version, uptime, sessions and
// listeners (one row on a single node).
import * as api from "../api.js";
import {h, card, stat, num} from "../ui.js";
import {nodeTable} from "./overview.js";

export default function render(ctx) {
	const stats = h("div", {class: "grid stats"});
	const list = h("div", {id: "nodes-table"});
	ctx.root.append(stats, card("Nodes", list));
	ctx.every(5000, async () => {
		const ns = await api.get("/nodes");
		const sum = (f) => ns.reduce((a, n) => a + (n[f] || 0), 0);
		stats.replaceChildren(
			stat("Nodes", num(ns.length), `${ns.filter((n) => n.status === "running").length} running`),
			stat("Connections", num(sum("connections"))),
			stat("Sessions", num(sum("sessions"))),
			stat("Subscriptions", num(sum("subscriptions"))));
		list.replaceChildren(nodeTable(ns),
			h("p", {class: "muted"}, ns.length > 1 ? "Every member of the cluster, as this node sees it."
				: "A single node. The members of a cluster appear here."));
	});
}
