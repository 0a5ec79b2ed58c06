// The views: the alert queue, an alert, the cases, a case, webhook deliveries.
// Every value from the API is inserted as text.

import { api, query } from "./api.js";
import { clear, dl, flash, h, table } from "./dom.js";
import { drawGraph } from "./graph.js";
import { DETECTOR_NAMES, detectorLabel, t } from "./i18n.js";
import { canAct, route } from "./main.js";

const SEVERITIES = ["low", "medium", "high", "critical"];
const STATUSES = ["open", "acknowledged", "closed"];
const FILTERS = ["detector", "severity", "status", "subject", "q", "assignee", "since", "until", "case"];
const SORTABLE = [["severity", "severity"], ["detector", "detector"], ["subject", "subject"], ["amount", "amount"], ["last_ts", "last_ts"]];
// Cursors of the pages before this one, per filter and order (Previous page).
const history = new Map();

const sev = (s) => h("span", { class: `sev sev-${s}` }, t(s));
const alertLink = (id, text) => h("a", { href: `#/alert/${encodeURIComponent(id)}`, class: "alert-link" }, text ?? id);
const caseLink = (id, text) => h("a", { href: `#/case/${encodeURIComponent(id)}`, class: "case-link" }, text ?? `#${id}`);
// Times as the API gives them, with their offset (alerts: the engine's zone;
// audit events: UTC), to the second.
const when = (iso) => (iso ? String(iso).replace("T", " ").replace(/\.\d+/, "") : "");

function select(id, values, current, label) {
  return h("select", { id, name: id },
    h("option", { value: "" }, t("any")),
    values.map((v) => h("option", { value: v, selected: v === current }, label ? label(v) : t(v))));
}

async function act(fn, okText = t("done")) {
  try {
    await fn();
    flash(okText);
    await route();
  } catch (e) {
    flash(e.message, "error");
  }
}

// -- the queue --------------------------------------------------------------

export async function queueView(root, params) {
  const order = params.get("order") || "-last_ts";
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
  const key = JSON.stringify([filters, order]);
  const cursor = params.get("cursor") || "";
  const data = await api("GET", `/alerts${query({ ...filters, order, cursor, limit: 50 })}`);

  const toHash = (extra) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...filters, order, ...extra })) if (v) q.set(k, v);
    return `#/queue?${q}`;
  };
  const inputs = {
    detector: select("f-detector", DETECTOR_NAMES, filters.detector, detectorLabel),
    severity: select("f-severity", SEVERITIES, filters.severity),
    status: select("f-status", STATUSES, filters.status),
    subject: h("input", { id: "f-subject", value: filters.subject }),
    q: h("input", { id: "f-q", type: "search", value: filters.q }),
    assignee: h("input", { id: "f-assignee", value: filters.assignee }),
    since: h("input", { id: "f-since", type: "datetime-local", value: filters.since ? toLocal(filters.since) : "" }),
    until: h("input", { id: "f-until", type: "datetime-local", value: filters.until ? toLocal(filters.until) : "" }),
  };
  const form = h("form", { class: "filters", id: "filters" },
    Object.entries(inputs).map(([k, el]) => h("label", {}, t(k === "q" ? "text" : k), el)),
    h("button", { type: "submit", id: "apply-filters" }, t("apply")),
    h("a", { href: "#/queue", class: "button" }, t("reset")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = {};
    for (const [k, el] of Object.entries(inputs)) {
      const v = el.value.trim();
      next[k] = (k === "since" || k === "until") && v ? new Date(v).toISOString() : v;
    }
    history.delete(key);
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...next, case: filters.case, order })) if (v) q.set(k, v);
    location.hash = `#/queue?${q}`;
  });

  const total = Object.values(data.counts).reduce((a, b) => a + b, 0);
  const counts = h("div", { class: "counts", id: "counts" },
    h("span", {}, `${t("counts")}:`),
    SEVERITIES.slice().reverse().map((s) => h("a", { href: toHash({ severity: s }), class: `count sev-${s}`, id: `count-${s}` }, `${t(s)} ${data.counts[s] ?? 0}`)),
    h("span", { class: "count total", id: "count-total" }, `${t("total")} ${total}`));

  const selected = new Set();
  const header = [
    canAct() ? h("th", {}, t("select")) : null,
    ...SORTABLE.map(([label, field]) => {
      const active = order.replace(/^-/, "") === field;
      const next = active && !order.startsWith("-") ? `-${field}` : (active ? field : (field === "detector" || field === "subject" ? field : `-${field}`));
      return h("th", { class: active ? "sorted" : "" },
        h("a", { href: toHash({ order: next }), class: "sort", dataset: { order: field } }, t(label), active ? (order.startsWith("-") ? " ▼" : " ▲") : ""));
    }),
    h("th", {}, t("status")), h("th", {}, t("assignee")), h("th", {}, t("summary")),
  ].filter(Boolean);
  const rows = data.items.map((r) => h("tr", { dataset: { alertId: r.alert.alert_id } },
    canAct() ? h("td", {}, h("input", { type: "checkbox", class: "pick", "aria-label": r.alert.alert_id, onchange: (ev) => { ev.target.checked ? selected.add(r.alert.alert_id) : selected.delete(r.alert.alert_id); } })) : null,
    h("td", {}, sev(r.alert.severity)),
    h("td", {}, detectorLabel(r.alert.detector)),
    h("td", {}, r.alert.subject_id),
    h("td", { class: "num" }, r.alert.amount),
    h("td", {}, when(r.alert.last_ts)),
    h("td", { class: "status" }, t(r.status)),
    h("td", {}, r.assignee ?? ""),
    h("td", { class: "summary" }, alertLink(r.alert.alert_id, r.alert.summary))));

  const pager = h("div", { class: "pager" });
  const prev = history.get(key) || [];
  if (cursor) {
    pager.append(h("button", { type: "button", id: "prev-page", onclick: () => {
      const back = prev.pop(); history.set(key, prev);
      location.hash = toHash({ cursor: back || "" });
    } }, t("prev_page")));
  }
  if (data.next_cursor) {
    pager.append(h("button", { type: "button", id: "next-page", onclick: () => {
      history.set(key, [...prev, cursor]);
      location.hash = toHash({ cursor: data.next_cursor });
    } }, t("next_page")));
  }
  const exportLink = h("a", { class: "button", id: "export", href: `/api/v1/export${query({ ...filters, case: filters.case, format: "csv" })}` }, `${t("export")} CSV`);

  root.append(h("h1", {}, t("nav_queue")), form, counts,
    data.items.length ? table(header, rows, { class: "grid queue" }) : h("p", { id: "no-alerts" }, t("no_alerts")),
    pager, exportLink);
  if (canAct()) {
    const title = h("input", { id: "case-title", placeholder: t("case_title") });
    root.append(h("form", { class: "inline", id: "group-form", onsubmit: (ev) => {
      ev.preventDefault();
      act(async () => {
        const c = await api("POST", "/cases", { title: title.value, alert_ids: [...selected] });
        location.hash = `#/case/${c.case_id}`;
      });
    } }, title, h("button", { type: "submit", id: "group-case" }, t("group_case"))));
  }
}

function toLocal(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

// -- an alert -----------------------------------------------------------------

function valueText(v) {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return v.map(valueText).join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

const TXN_KEYS = ["sample_txn_ids", "offending_txn_ids"];

export async function alertView(root, id) {
  const d = await api("GET", `/alerts/${encodeURIComponent(id)}`);
  const a = d.alert;
  const ev = a.evidence || {};
  root.append(
    h("h1", {}, sev(a.severity), " ", detectorLabel(a.detector), " · ", a.subject_id),
    h("p", { class: "summary-text", id: "alert-summary" }, a.summary),
    h("section", {}, h("h2", {}, t("figures")), dl([
      ["alert_id", h("code", { id: "alert-id" }, a.alert_id)],
      [t("status"), h("span", { id: "alert-status" }, t(d.status))],
      [t("assignee"), h("span", { id: "alert-assignee" }, d.assignee ?? t("unassigned"))],
      [t("amount"), a.amount],
      [t("first_ts"), a.first_ts],
      [t("last_ts"), a.last_ts],
      [t("accounts"), a.accounts.join(", ")],
      [t("revision"), String(a.revision)],
      [t("cases"), h("span", { id: "alert-cases" }, d.cases.map((c) => caseLink(c.case_id, `#${c.case_id} ${c.title}`)))],
      ...Object.entries(ev).filter(([k]) => k !== "thresholds" && !TXN_KEYS.includes(k)).map(([k, v]) => [k, valueText(v)]),
    ])),
    h("section", {}, h("h2", {}, t("thresholds")), dl(Object.entries(ev.thresholds || {}).map(([k, v]) => [k, valueText(v)]))),
    h("section", {}, h("h2", {}, t("transactions")),
      h("ul", { class: "txns", id: "txns" }, TXN_KEYS.flatMap((k) => (ev[k] || []).map((x) => h("li", {}, h("code", {}, x), ` (${k})`))))),
  );
  const graphBox = h("div", { id: "graph", class: "graph-box" }, t("loading"));
  root.append(h("section", {}, h("h2", {}, t("graph")), graphBox));
  root.append(actionsFor(a, d));
  root.append(h("section", {}, h("h2", {}, t("revisions")), table(
    [t("revision"), t("severity"), t("amount"), t("last_ts"), t("summary")],
    d.revisions.map((r) => h("tr", {}, h("td", {}, String(r.revision)), h("td", {}, sev(r.severity)), h("td", { class: "num" }, r.amount), h("td", {}, when(r.last_ts)), h("td", {}, r.summary))))));
  root.append(h("section", {}, h("h2", {}, t("audit")), auditTable(d.events, "audit")));
  loadGraph(a.alert_id, graphBox);
}

async function loadGraph(id, box) {
  try {
    const g = await api("GET", `/alerts/${encodeURIComponent(id)}/graph`);
    clear(box);
    const note = g.graph && g.graph.source === "alert" ? `${t("graph_from_alert")} ${g.graph.note || ""}` : (g.graph && g.graph.note) || "";
    if (note) box.append(h("p", { class: "note", id: "graph-note" }, note));
    const { svg, shown, total } = drawGraph(g);
    box.append(svg);
    if (shown < total) box.append(h("p", { class: "note" }, `${shown} / ${total}`));
  } catch (e) {
    clear(box).append(h("p", { class: "error" }, e.message));
  }
}

function auditTable(events, id) {
  return table([t("at"), t("action"), t("actor"), t("note")],
    events.map((e) => h("tr", { dataset: { action: e.action } }, h("td", {}, when(e.at)), h("td", {}, e.action), h("td", { class: "actor" }, e.actor), h("td", { class: "note-cell" }, e.note ?? (e.alert_id || "")))),
    { class: "grid audit", id });
}

function actionsFor(a, d) {
  const box = h("section", { id: "actions" }, h("h2", {}, t("actions")));
  if (!canAct()) { box.append(h("p", { id: "read-only" }, t("read_only"))); return box; }
  const path = `/alerts/${encodeURIComponent(a.alert_id)}`;
  const note = h("input", { id: "action-note", placeholder: t("note") });
  const moves = h("div", { class: "buttons" });
  const move = (verb, label) => h("button", { type: "button", id: `do-${verb}`, onclick: () => act(() => api("POST", `${path}/${verb}`, { note: note.value || null })) }, t(label));
  if (d.status === "open") moves.append(move("ack", "ack"));
  if (d.status !== "closed") moves.append(move("close", "close"));
  if (d.status === "closed") moves.append(move("reopen", "reopen"));
  const assignee = h("input", { id: "assign-input", placeholder: t("assignee"), value: d.assignee ?? "" });
  const comment = h("textarea", { id: "comment-text", rows: 3, placeholder: t("comment") });
  const caseId = h("input", { id: "case-input", placeholder: t("case_id"), inputmode: "numeric" });
  box.append(
    h("div", { class: "inline" }, note, moves),
    h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); act(() => api("POST", `${path}/assign`, { assignee: assignee.value.trim() || null })); } },
      assignee, h("button", { type: "submit", id: "do-assign" }, t("assign"))),
    h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); act(() => api("POST", `${path}/comments`, { text: comment.value })); } },
      comment, h("button", { type: "submit", id: "do-comment" }, t("comment"))),
    h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); act(() => api("POST", `/cases/${encodeURIComponent(caseId.value.trim())}/alerts`, { alert_ids: [a.alert_id] })); } },
      caseId, h("button", { type: "submit", id: "do-add-case" }, t("add_to_case"))),
  );
  return box;
}

// -- cases --------------------------------------------------------------------

export async function casesView(root, params) {
  const status = params.get("status") || "";
  const data = await api("GET", `/cases${query({ status, cursor: params.get("cursor") || "" })}`);
  root.append(h("h1", {}, t("nav_cases")),
    h("div", { class: "counts" }, ["", "open", "closed"].map((s) => h("a", { href: `#/cases${s ? `?status=${s}` : ""}`, class: `count${s === status ? " sorted" : ""}` }, s ? t(s) : t("any")))),
    table([t("case_id"), t("title"), t("status"), t("owner"), t("alerts"), t("updated_at")],
      data.items.map((c) => h("tr", { dataset: { caseId: String(c.case_id) } },
        h("td", {}, caseLink(c.case_id)), h("td", {}, caseLink(c.case_id, c.title)), h("td", {}, t(c.status)),
        h("td", {}, c.owner ?? ""), h("td", { class: "num" }, String(c.alert_ids.length)), h("td", {}, when(c.updated_at)))),
      { class: "grid cases" }));
  if (data.next_cursor) root.append(h("a", { class: "button", id: "cases-next", href: `#/cases${query({ status, cursor: data.next_cursor })}` }, t("next_page")));
  if (canAct()) {
    const title = h("input", { id: "new-case-title", placeholder: t("case_title") });
    root.append(h("form", { class: "inline", onsubmit: (ev) => {
      ev.preventDefault();
      act(async () => { const c = await api("POST", "/cases", { title: title.value }); location.hash = `#/case/${c.case_id}`; });
    } }, title, h("button", { type: "submit", id: "new-case" }, t("new_case"))));
  }
}

export async function caseView(root, id) {
  const d = await api("GET", `/cases/${encodeURIComponent(id)}`);
  const c = d.case;
  const path = `/cases/${c.case_id}`;
  root.append(
    h("h1", {}, `#${c.case_id} `, h("span", { id: "case-title-text" }, c.title)),
    dl([[t("status"), h("span", { id: "case-status" }, t(c.status))], [t("owner"), h("span", { id: "case-owner" }, c.owner ?? t("unassigned"))],
      [t("created_by"), c.created_by], [t("updated_at"), when(c.updated_at)]]),
    h("section", {}, h("h2", {}, t("alerts")), table([t("severity"), t("detector"), t("subject"), t("amount"), t("status"), t("summary")],
      d.alerts.map((r) => h("tr", { dataset: { alertId: r.alert.alert_id } }, h("td", {}, sev(r.alert.severity)), h("td", {}, detectorLabel(r.alert.detector)),
        h("td", {}, r.alert.subject_id), h("td", { class: "num" }, r.alert.amount), h("td", {}, t(r.status)), h("td", {}, alertLink(r.alert.alert_id, r.alert.summary)))),
      { class: "grid case-alerts" })),
    h("section", {}, h("h2", {}, t("notes")), auditTable(d.events, "case-events")),
  );
  const box = h("section", { id: "case-actions" }, h("h2", {}, t("actions")));
  if (!canAct()) { box.append(h("p", { id: "read-only" }, t("read_only"))); root.append(box); return; }
  const note = h("textarea", { id: "case-comment", rows: 3, placeholder: t("note") });
  const owner = h("input", { id: "case-owner-input", placeholder: t("owner"), value: c.owner ?? "" });
  const ids = h("input", { id: "case-add-ids", placeholder: t("add_alerts") });
  const status = c.status === "open" ? "closed" : "open";
  box.append(
    h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); act(() => api("POST", `${path}/comments`, { text: note.value })); } }, note, h("button", { type: "submit", id: "do-case-comment" }, t("comment"))),
    h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); act(() => api("POST", `${path}/assign`, { owner: owner.value.trim() || null })); } }, owner, h("button", { type: "submit", id: "do-case-assign" }, t("set_owner"))),
    h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); act(() => api("POST", `${path}/alerts`, { alert_ids: ids.value.split(",").map((x) => x.trim()).filter(Boolean) })); } }, ids, h("button", { type: "submit", id: "do-case-add" }, t("add"))),
    h("button", { type: "button", id: "do-case-status", onclick: () => act(() => api("POST", `${path}/status`, { status })) }, t(status === "closed" ? "close_case" : "reopen_case")),
  );
  root.append(box);
}

// -- webhook deliveries (admin) ---------------------------------------------

export async function deliveriesView(root, params) {
  const state = params.get("state") || "";
  const data = await api("GET", `/webhooks/deliveries${query({ state })}`);
  root.append(h("h1", {}, t("deliveries")),
    h("div", { class: "counts" }, ["", "pending", "delivered", "dead"].map((s) => h("a", { href: `#/deliveries${s ? `?state=${s}` : ""}`, class: `count${s === state ? " sorted" : ""}` }, s ? t(s) : t("any")))),
    table([t("notice"), t("hook"), t("kind"), t("alerts"), t("state"), t("attempts"), t("next_at"), t("last_error"), ""],
      data.items.map((x) => h("tr", { dataset: { state: x.state } },
        h("td", {}, String(x.notice_id)), h("td", {}, x.hook), h("td", {}, x.notice.kind),
        h("td", {}, alertLink(x.alert.alert_id)), h("td", {}, t(x.state)), h("td", { class: "num" }, String(x.attempts)),
        h("td", {}, when(x.next_at)), h("td", { class: "error-cell" }, x.last_error ?? ""),
        h("td", {}, x.state === "dead" ? h("button", { type: "button", class: "retry", onclick: () => act(() => api("POST", `/webhooks/deliveries/${x.notice_id}/${encodeURIComponent(x.hook)}/retry`, {})) }, t("retry")) : ""))),
      { class: "grid deliveries" }));
}
