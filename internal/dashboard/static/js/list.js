// A searchable, paged, self-refreshing table over one of the API's paged
// list endpoints ({data, meta: {count}}).
import * as api from "./api.js";
import {h, table, pager, debounce} from "./ui.js";

// searchList renders a toolbar of search boxes and a table into the page.
// opts: path (API path), id (element id of the table), search ([[name,
// placeholder]]), filters (initial query values), controls (extra toolbar
// nodes, given the filters and the reload function), columns, empty,
// limit, refreshMs. It returns the reload function.
export function searchList(ctx, parent, opts) {
	const limit = opts.limit || 50;
	const f = {...(opts.filters || {}), page: 1};
	const list = h("div", {id: opts.id});
	let shown = "";
	const load = async (force) => {
		const res = await api.get(opts.path + api.q({...f, limit}));
		// Keep the table (and a button about to be clicked) when nothing changed.
		const key = JSON.stringify([f, res]);
		if (key === shown && force !== true) return;
		shown = key;
		const count = res.meta?.count ?? 0;
		list.replaceChildren(table(opts.columns, res.data || [], opts.empty),
			pager(f.page, f.page * limit < count, (p) => { f.page = p; load(); }, count));
	};
	const set = (name, value) => { f[name] = value; f.page = 1; load(); };
	const boxes = (opts.search || []).map(([name, placeholder]) => h("input", {type: "search", name, placeholder,
		id: opts.id + "-" + name, value: f[name] || "", oninput: debounce((ev) => set(name, ev.target.value.trim()), 250)}));
	parent.append(h("div", {class: "toolbar"}, boxes, opts.controls ? opts.controls(set) : null), list);
	ctx.every(opts.refreshMs || 5000, load);
	return load;
}
