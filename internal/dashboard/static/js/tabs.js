// Tabs within a page, addressed as #/<page>/<tab> so a tab can be linked.
import {h, card} from "./ui.js";

// tabs renders the tab bar and the tab named by ctx.params[0] (the first
// by default): its render(ctx, body) fills the card's body.
export function tabs(ctx, page, list) {
	const active = list.find((t) => t.id === ctx.params[0]) || list[0];
	const body = h("div", {id: "tab-body-" + active.id});
	const bar = h("div", {class: "tabs", role: "tablist"}, list.map((t) =>
		h("button", {id: "tab-" + t.id, role: "tab", class: t === active ? "active" : null, "aria-selected": String(t === active),
			onclick: () => ctx.go(page + "/" + t.id)}, t.label)));
	ctx.root.append(card(null, bar, body));
	active.render(ctx, body);
}
