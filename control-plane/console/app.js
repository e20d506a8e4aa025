// Herald's console: a page of its own over the JSON API (/api/...), signed
// in with an API key kept only in this tab's sessionStorage. Every value
// from the API reaches the page as text (text nodes and attributes, never
// HTML), and the Content-Security-Policy allows scripts from this origin
// only.

const KEY = "herald.key";
const main = document.getElementById("main");

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls `Service/Method` with `body`; the answer, or an ApiError. */
async function api(method, body = {}) {
  const r = await fetch(`/api/herald.v1.${method}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(body),
  });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) {
    if (r.status === 401) {
      sessionStorage.removeItem(KEY);
      route();
    }
    throw new ApiError(r.status, answer.code || "unknown", answer.message || r.statusText);
  }
  return answer;
}

/** An element: `h("td", {class: "x"}, "text", child)`. Text stays text. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(...nodes) {
  main.replaceChildren(...nodes.flat());
}

function errorBox(e) {
  return h("div", { class: "error", role: "alert" }, `${e.code || "error"}: ${e.message}`);
}

/** Runs `f`, putting its error (if any) in `where`. */
async function attempt(where, f) {
  try {
    await f();
  } catch (e) {
    where.replaceChildren(errorBox(e));
  }
}

const time = (ms) => (Number(ms) > 0 ? new Date(Number(ms)).toISOString().replace("T", " ").slice(0, 19) : "");
const statusName = (s) => (s || "DELIVERY_STATUS_PENDING").replace("DELIVERY_STATUS_", "").toLowerCase();
const enc = encodeURIComponent;

// ---- sign in ---------------------------------------------------------------

function signIn() {
  document.getElementById("nav").hidden = true;
  const input = h("input", { name: "key", type: "password", placeholder: "hk_…", size: 60, autocomplete: "off" });
  const msg = h("div");
  const form = h(
    "form",
    {
      class: "inline",
      onsubmit: async (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        await attempt(msg, async () => {
          await api("TenantService/ListTenants", { page_size: 1 });
          location.hash = "#/";
          route();
        });
      },
    },
    h("label", {}, "API key", input),
    h("button", { class: "primary", type: "submit" }, "Sign in"),
  );
  show(h("h1", {}, "Sign in"), h("p", { class: "muted" }, "The key stays in this tab only."), form, msg);
}

// ---- tenants ---------------------------------------------------------------

async function tenants(pageToken = "") {
  const list = await api("TenantService/ListTenants", { page_size: 100, page_token: pageToken });
  const msg = h("div");
  const id = h("input", { name: "tenant-id", required: true, placeholder: "acme" });
  const name = h("input", { name: "tenant-name", placeholder: "Acme Corp" });
  const form = h(
    "form",
    {
      class: "inline",
      onsubmit: (ev) => {
        ev.preventDefault();
        attempt(msg, async () => {
          await api("TenantService/CreateTenant", { id: id.value.trim(), name: name.value });
          route();
        });
      },
    },
    h("label", {}, "Id", id),
    h("label", {}, "Name", name),
    h("button", { class: "primary", type: "submit" }, "Create tenant"),
  );
  const rows = (list.tenants || []).map((t) =>
    h("tr", {}, h("td", {}, h("a", { href: `#/t/${enc(t.id)}` }, t.id)), h("td", {}, t.name || ""), h("td", {}, time(t.created_at_ms))),
  );
  show(
    h("h1", {}, "Tenants"),
    form,
    msg,
    h("table", { id: "tenants" }, h("tr", {}, h("th", {}, "Id"), h("th", {}, "Name"), h("th", {}, "Created")), rows),
    list.next_page_token ? h("p", {}, h("button", { id: "more-tenants", onclick: () => tenants(list.next_page_token) }, "Next page")) : "",
  );
}

// ---- a tenant's endpoints --------------------------------------------------

async function endpoints(tenant, pageToken = "") {
  const list = await api("EndpointService/ListEndpoints", { tenant_id: tenant, page_size: 100, page_token: pageToken });
  const msg = h("div", { id: "endpoint-message" });
  const rows = await Promise.all(
    (list.endpoints || []).map(async (e) => {
      const s = e.spec || {};
      const stats = await api("DeliveryService/GetEndpointStats", { tenant_id: tenant, endpoint_id: e.id }).catch(() => ({}));
      const state = s.enabled ? "enabled" : "disabled";
      const toggle = h(
        "button",
        {
          class: "toggle",
          "data-endpoint": e.id,
          onclick: () =>
            attempt(msg, async () => {
              await api("EndpointService/UpdateEndpoint", {
                tenant_id: tenant,
                id: e.id,
                spec: { ...s, enabled: !s.enabled },
                expected_revision: e.revision,
              });
              route();
            }),
        },
        s.enabled ? "Disable" : "Enable",
      );
      const test = h(
        "button",
        {
          onclick: () =>
            attempt(msg, async () => {
              const r = await api("DeliveryService/SendTestEvent", { tenant_id: tenant, endpoint_id: e.id });
              msg.replaceChildren(h("div", { class: "notice" }, `Test event sent: ${r.delivery_id || r.event_id || "ok"}`));
            }),
        },
        "Send test event",
      );
      return h(
        "tr",
        { "data-endpoint": e.id },
        h("td", {}, h("a", { href: `#/t/${enc(tenant)}/e/${enc(e.id)}` }, s.name || e.id)),
        h("td", {}, s.url || ""),
        h("td", {}, (s.event_types || []).join(", ")),
        h("td", {}, h("span", { class: `state-${state}` }, state), e.disabled_reason ? h("div", { class: "muted" }, e.disabled_reason) : null),
        h("td", {}, String(stats.queue_depth || 0)),
        h("td", {}, toggle, " ", test),
      );
    }),
  );
  show(
    h("p", {}, h("a", { href: "#/" }, "Tenants"), " / ", tenant),
    h("h1", {}, `Endpoints of ${tenant}`),
    endpointForm(tenant, msg),
    msg,
    h(
      "table",
      { id: "endpoints" },
      h("tr", {}, ["Name", "URL", "Event types", "State", "Queued", ""].map((c) => h("th", {}, c))),
      rows,
    ),
    list.next_page_token ? h("p", {}, h("button", { id: "more-endpoints", onclick: () => endpoints(tenant, list.next_page_token) }, "Next page")) : "",
  );
}

function endpointForm(tenant, msg) {
  const name = h("input", { name: "endpoint-name", required: true, placeholder: "billing" });
  const url = h("input", { name: "endpoint-url", required: true, size: 40, placeholder: "https://…" });
  const types = h("input", { name: "endpoint-types", required: true, placeholder: "invoice.*" });
  const enabled = h("input", { name: "endpoint-enabled", type: "checkbox" });
  const timeout = h("input", { name: "endpoint-timeout", type: "number", min: 0, placeholder: "15000" });
  return h(
    "form",
    {
      class: "inline",
      onsubmit: (ev) => {
        ev.preventDefault();
        attempt(msg, async () => {
          const r = await api("EndpointService/CreateEndpoint", {
            tenant_id: tenant,
            spec: {
              name: name.value,
              url: url.value.trim(),
              enabled: enabled.checked,
              event_types: types.value.split(",").map((t) => t.trim()).filter(Boolean),
              timeout_ms: Number(timeout.value) || 0,
            },
          });
          await endpoints(tenant);
          document
            .getElementById("endpoint-message")
            .replaceChildren(
              h("div", { class: "notice" }, "Created. Its signing secret, shown only now: ", h("span", { class: "secret", id: "new-secret" }, r.signing_secret || "")),
            );
        });
      },
    },
    h("label", {}, "Name", name),
    h("label", {}, "URL", url),
    h("label", {}, "Event types (comma-separated)", types),
    h("label", {}, "Timeout ms", timeout),
    h("label", {}, "Enabled", enabled),
    h("button", { class: "primary", type: "submit" }, "Create endpoint"),
  );
}

// ---- one endpoint: statistics, chart, log ----------------------------------

async function endpointPage(tenant, id) {
  const [ep, stats] = await Promise.all([
    api("EndpointService/GetEndpoint", { tenant_id: tenant, id }),
    api("DeliveryService/GetEndpointStats", { tenant_id: tenant, endpoint_id: id }),
  ]);
  const s = ep.spec || {};
  const msg = h("div", { id: "page-message" });
  const stat = (label, v) => h("div", { class: "stat" }, h("b", {}, String(v ?? 0)), label);
  const rotate = h(
    "button",
    {
      onclick: () =>
        attempt(msg, async () => {
          const r = await api("EndpointService/RotateSecret", { tenant_id: tenant, id });
          msg.replaceChildren(h("div", { class: "notice" }, "New secret, shown only now: ", h("span", { class: "secret" }, r.secret || "")));
        }),
    },
    "Rotate secret",
  );
  const since = h("input", { name: "recover-since", type: "datetime-local" });
  const recover = h(
    "form",
    {
      class: "inline",
      onsubmit: (ev) => {
        ev.preventDefault();
        attempt(msg, async () => {
          const ms = since.value ? new Date(since.value).getTime() : 0;
          const r = await api("DeliveryService/RecoverDeliveries", { tenant_id: tenant, endpoint_id: id, since_ms: String(ms) });
          msg.replaceChildren(h("div", { class: "notice" }, `Re-sent ${r.resent || 0} failed deliveries.`));
        });
      },
    },
    h("label", {}, "Recover failed deliveries since", since),
    h("button", { type: "submit" }, "Recover"),
  );
  const edit = editForms(tenant, ep, msg);
  const chart = h("div", { class: "chart", id: "chart" });
  const log = h("div", { id: "log" });
  show(
    h("p", {}, h("a", { href: "#/" }, "Tenants"), " / ", h("a", { href: `#/t/${enc(tenant)}` }, tenant), " / ", s.name || id),
    h("h1", {}, s.name || id, " ", h("span", { class: s.enabled ? "state-enabled" : "state-disabled" }, s.enabled ? "enabled" : "disabled")),
    h("p", { class: "muted" }, s.url || "", " · ", (s.event_types || []).join(", "), ep.disabled_reason ? ` · disabled: ${ep.disabled_reason}` : ""),
    h(
      "div",
      { class: "stats", id: "stats" },
      stat("events", stats.events),
      stat("succeeded", stats.successes),
      stat("failed for good", stats.failures),
      stat("failed attempts", stats.failed_attempts),
      stat("queued", stats.queue_depth),
    ),
    h("p", {}, rotate),
    recover,
    msg,
    h("h2", {}, "Settings"),
    edit,
    h("h2", {}, "Deliveries per minute, last 3 hours"),
    chart,
    h("h2", {}, "Delivery log"),
    log,
  );
  await Promise.all([drawChart(chart, tenant, id), deliveryLog(log, tenant, id)]);
}

/** The endpoint's settings: the common ones as fields, and every one as
 * the spec's JSON (filters, rules, auth, headers, labels, …). Both save
 * with the revision read, so a change made meanwhile is not overwritten. */
function editForms(tenant, ep, msg) {
  const s = ep.spec || {};
  const field = (name, label, value, attrs = {}) => {
    const input = h("input", { name: `edit-${name}`, value: value ?? "", ...attrs });
    return [input, h("label", {}, label, input)];
  };
  const [name, nameL] = field("name", "Name", s.name);
  const [url, urlL] = field("url", "URL", s.url, { size: 40 });
  const [types, typesL] = field("types", "Event types", (s.event_types || []).join(", "));
  const [timeout, timeoutL] = field("timeout", "Timeout ms", s.timeout_ms || "", { type: "number", min: 0 });
  const [retry, retryL] = field("retry", "Retry delays ms", ((s.retry || {}).delays_ms || []).join(", "));
  const [rate, rateL] = field("rate", "Requests/s (0: no limit)", s.rate_limit_per_sec || "", { type: "number", min: 0 });
  const save = (spec) =>
    attempt(msg, async () => {
      await api("EndpointService/UpdateEndpoint", { tenant_id: tenant, id: ep.id, spec, expected_revision: ep.revision });
      await endpointPage(tenant, ep.id);
      document.getElementById("page-message").replaceChildren(h("div", { class: "notice", id: "saved" }, "Saved."));
    });
  const common = h(
    "form",
    {
      class: "inline",
      id: "edit-common",
      onsubmit: (ev) => {
        ev.preventDefault();
        const delays = retry.value.split(",").map((d) => d.trim()).filter(Boolean).map(Number);
        save({
          ...s,
          name: name.value,
          url: url.value.trim(),
          event_types: types.value.split(",").map((t) => t.trim()).filter(Boolean),
          timeout_ms: Number(timeout.value) || 0,
          retry: { delays_ms: delays },
          rate_limit_per_sec: Number(rate.value) || 0,
        });
      },
    },
    nameL,
    urlL,
    typesL,
    timeoutL,
    retryL,
    rateL,
    h("button", { class: "primary", type: "submit" }, "Save"),
  );
  const json = h("textarea", { name: "edit-json", rows: 12, cols: 100, spellcheck: "false" });
  json.value = JSON.stringify(s, null, 2);
  const all = h(
    "form",
    {
      id: "edit-json",
      onsubmit: (ev) => {
        ev.preventDefault();
        let spec;
        try {
          spec = JSON.parse(json.value);
        } catch (e) {
          msg.replaceChildren(errorBox({ code: "invalid_json", message: e.message }));
          return;
        }
        save(spec);
      },
    },
    h("details", {}, h("summary", {}, "Every setting, as JSON (see the README's endpoint settings)"), json, h("div", {}, h("button", { type: "submit" }, "Save JSON"))),
  );
  return h("div", {}, common, all);
}

/** Deliveries per minute by outcome, from the log (up to 5,000 newest). */
async function drawChart(where, tenant, id) {
  const since = Date.now() - 3 * 3600 * 1000;
  const all = [];
  let token = "";
  for (let i = 0; i < 10; i++) {
    const page = await api("DeliveryService/ListDeliveries", {
      tenant_id: tenant,
      endpoint_id: id,
      since_ms: String(since),
      page_size: 500,
      page_token: token,
    });
    all.push(...(page.deliveries || []));
    token = page.next_page_token || "";
    if (!token) break;
  }
  const minutes = new Map();
  for (const d of all) {
    const m = Math.floor(Number(d.created_at_ms) / 60000);
    const k = statusName(d.status);
    const row = minutes.get(m) || { succeeded: 0, failed: 0, retrying: 0, pending: 0 };
    row[k] = (row[k] || 0) + 1;
    minutes.set(m, row);
  }
  const now = Math.floor(Date.now() / 60000);
  const width = 720, height = 140, n = 180, bw = width / n;
  const max = Math.max(1, ...[...minutes.values()].map((r) => r.succeeded + r.failed + r.retrying + r.pending));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 16}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${all.length} deliveries in the last 3 hours`);
  const colors = { succeeded: "#12805c", retrying: "#b54708", pending: "#98a2b3", failed: "#c4320a" };
  for (const [m, row] of minutes) {
    const x = (n - 1 - (now - m)) * bw;
    if (x < 0) continue;
    let y = height;
    for (const k of ["succeeded", "retrying", "pending", "failed"]) {
      if (!row[k]) continue;
      const bar = (row[k] / max) * height;
      y -= bar;
      const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      for (const [a, v] of Object.entries({ x, y, width: Math.max(1, bw - 1), height: bar, fill: colors[k], class: `bar-${k}` })) r.setAttribute(a, v);
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = `${new Date(m * 60000).toISOString().slice(11, 16)} ${k}: ${row[k]}`;
      r.append(title);
      svg.append(r);
    }
  }
  const axis = document.createElementNS("http://www.w3.org/2000/svg", "line");
  for (const [a, v] of Object.entries({ x1: 0, y1: height, x2: width, y2: height, stroke: "#d0d5dd" })) axis.setAttribute(a, v);
  svg.append(axis);
  const legend = h("div", { class: "legend" }, Object.entries(colors).map(([k]) => h("span", { class: `status-${k}` }, k)), h("span", { class: "muted" }, `max ${max}/min`));
  where.replaceChildren(svg, legend);
}

async function deliveryLog(where, tenant, id, token = "") {
  const status = h("select", { name: "log-status" }, ["", "pending", "retrying", "succeeded", "failed"].map((s) => h("option", { value: s }, s || "any status")));
  const type = h("input", { name: "log-type", placeholder: "event type or pattern" });
  const resource = h("input", { name: "log-resource", placeholder: "resource id" });
  const from = h("input", { name: "log-since", type: "datetime-local" });
  const to = h("input", { name: "log-until", type: "datetime-local" });
  const table = h("table", { id: "deliveries" });
  const more = h("div");
  const msg = h("div");
  const load = async (pageToken) => {
    const req = { tenant_id: tenant, endpoint_id: id, page_size: 50, page_token: pageToken };
    if (status.value) req.statuses = [`DELIVERY_STATUS_${status.value.toUpperCase()}`];
    if (type.value.trim()) req.event_types = [type.value.trim()];
    if (resource.value.trim()) req.resource_id = resource.value.trim();
    if (from.value) req.since_ms = String(new Date(from.value).getTime());
    if (to.value) req.until_ms = String(new Date(to.value).getTime());
    const page = await api("DeliveryService/ListDeliveries", req);
    if (!pageToken) table.replaceChildren(h("tr", {}, ["Created", "Event type", "Status", "Attempts", "Last status", ""].map((c) => h("th", {}, c))));
    for (const d of page.deliveries || []) table.append(...deliveryRow(tenant, d, msg));
    more.replaceChildren(page.next_page_token ? h("button", { onclick: () => attempt(msg, () => load(page.next_page_token)) }, "Older") : "");
  };
  const filters = h(
    "form",
    { class: "inline", onsubmit: (ev) => { ev.preventDefault(); attempt(msg, () => load("")); } },
    h("label", {}, "Status", status),
    h("label", {}, "Type", type),
    h("label", {}, "Resource", resource),
    h("label", {}, "Since", from),
    h("label", {}, "Until", to),
    h("button", { type: "submit" }, "Filter"),
  );
  where.replaceChildren(filters, msg, table, more);
  await load(token);
}

function deliveryRow(tenant, d, msg) {
  const detail = h("td", { colspan: 6 });
  const detailRow = h("tr", { hidden: true, class: "detail" }, detail);
  const st = statusName(d.status);
  const open = h(
    "button",
    {
      class: "expand",
      onclick: () =>
        attempt(msg, async () => {
          if (!detailRow.hidden) {
            detailRow.hidden = true;
            return;
          }
          const full = await api("DeliveryService/GetDelivery", { tenant_id: tenant, delivery_id: d.delivery_id });
          detail.replaceChildren(deliveryDetail(tenant, full, msg));
          detailRow.hidden = false;
        }),
    },
    "Details",
  );
  const row = h(
    "tr",
    { class: "delivery", "data-delivery": d.delivery_id, "data-status": st },
    h("td", {}, time(d.created_at_ms)),
    h("td", {}, d.event_type || ""),
    h("td", {}, h("span", { class: `status-${st}` }, st), d.next_attempt_at_ms && Number(d.next_attempt_at_ms) > 0 ? h("div", { class: "muted" }, `next ${time(d.next_attempt_at_ms)}`) : null),
    h("td", {}, String(d.attempts || 0)),
    h("td", {}, String(d.last_status_code || "")),
    h("td", {}, open),
  );
  return [row, detailRow];
}

function deliveryDetail(tenant, full, msg) {
  const s = full.summary || {};
  const resend = h(
    "button",
    {
      class: "resend",
      onclick: () =>
        attempt(msg, async () => {
          const r = await api("DeliveryService/ResendDelivery", { tenant_id: tenant, delivery_id: s.delivery_id });
          msg.replaceChildren(h("div", { class: "notice", id: "resent" }, `Re-sent as ${r.delivery_id || "a new delivery"}.`));
        }),
    },
    "Resend",
  );
  let payload = full.payload_json || "";
  try {
    payload = JSON.stringify(JSON.parse(payload), null, 2);
  } catch {
    /* shown as it is */
  }
  const attempts = (full.attempts || []).map((a) =>
    h(
      "details",
      { class: "attempt" },
      h(
        "summary",
        {},
        `#${a.number || 0} ${time(a.started_at_ms)} · ${a.response_status ? `status ${a.response_status}` : "no answer"} · ${a.duration_ms || 0} ms`,
        a.error && a.error !== `status ${a.response_status}` ? ` · ${a.error}` : "",
      ),
      h("div", { class: "muted" }, `${a.method || "POST"} ${a.url || ""}`),
      h("pre", { class: "request-headers" }, Object.entries(a.request_headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n")),
      h("pre", { class: "response-headers" }, Object.entries(a.response_headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n")),
      h("pre", { class: "response-body" }, a.response_body || ""),
    ),
  );
  return h(
    "div",
    {},
    h("p", {}, `Delivery ${s.delivery_id} of event ${s.event_id} `, resend),
    h("pre", { class: "payload" }, payload),
    attempts.length ? attempts : h("p", { class: "muted" }, "No attempt yet."),
  );
}

// ---- catalog, cluster, keys ------------------------------------------------

async function catalog() {
  const list = await api("CatalogService/ListEventTypes", { include_archived: true });
  const groups = new Map();
  for (const t of list.event_types || []) {
    const g = t.group || "(no group)";
    groups.set(g, [...(groups.get(g) || []), t]);
  }
  const sections = [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([g, types]) =>
      h(
        "section",
        {},
        h("h2", {}, g),
        h(
          "table",
          {},
          h("tr", {}, ["Name", "Display name", "Description", ""].map((c) => h("th", {}, c))),
          types.map((t) => h("tr", {}, h("td", {}, t.name), h("td", {}, t.display_name || ""), h("td", {}, t.description || ""), h("td", {}, t.archived ? "archived" : ""))),
        ),
      ),
    );
  show(h("h1", {}, "Event types"), ...sections);
}

async function cluster() {
  const c = await api("ClusterService/GetCluster");
  const msg = h("div");
  const rows = (c.agents || []).map((a) =>
    h(
      "tr",
      { "data-agent": a.id },
      h("td", {}, a.id),
      h("td", {}, a.ingest_addr || ""),
      h("td", {}, String(a.slots || 0)),
      h("td", {}, String(a.queue_depth ?? "")),
      h("td", {}, `${a.incoming_handoffs || 0} in, ${a.outgoing_handoffs || 0} out`),
      h("td", { class: "agent-state" }, a.draining ? "draining" : "active"),
      h(
        "td",
        {},
        a.draining
          ? ""
          : h(
              "button",
              {
                class: "drain",
                onclick: () =>
                  attempt(msg, async () => {
                    if (!confirm(`Drain agent ${a.id}? Its slots and queues move to the others.`)) return;
                    await api("ClusterService/DrainAgent", { agent_id: a.id });
                    route();
                  }),
              },
              "Drain",
            ),
      ),
    ),
  );
  show(
    h("h1", {}, "Cluster"),
    h("p", {}, `Leader ${c.leader_id || "(none)"} · epoch ${c.epoch || 0} · ${c.slot_count || 0} slots · ${c.handoffs_in_progress || 0} handoffs in progress`),
    msg,
    h("table", { id: "agents" }, h("tr", {}, ["Agent", "Address", "Slots", "Queued", "Handoffs", "State", ""].map((x) => h("th", {}, x))), rows),
  );
}

async function keys() {
  const list = await api("AccessService/ListApiKeys");
  const msg = h("div");
  const name = h("input", { name: "key-name", required: true, placeholder: "ci" });
  const scopes = h("input", { name: "key-scopes", required: true, placeholder: "publish, config:read" });
  const form = h(
    "form",
    {
      class: "inline",
      onsubmit: (ev) => {
        ev.preventDefault();
        attempt(msg, async () => {
          const r = await api("AccessService/CreateApiKey", { name: name.value, scopes: scopes.value.split(",").map((s) => s.trim()).filter(Boolean) });
          await keys();
          main.prepend(h("div", { class: "notice" }, "The key, shown only now: ", h("span", { class: "secret" }, r.key || "")));
        });
      },
    },
    h("label", {}, "Name", name),
    h("label", {}, "Scopes", scopes),
    h("button", { class: "primary", type: "submit" }, "Create key"),
  );
  const rows = (list.api_keys || []).map((k) =>
    h(
      "tr",
      {},
      h("td", {}, k.id),
      h("td", {}, k.name || ""),
      h("td", {}, (k.scopes || []).join(", ")),
      h("td", {}, (k.tenants || []).join(", ") || "all"),
      h("td", {}, time(k.created_at_ms)),
      h("td", {}, h("button", { onclick: () => attempt(msg, async () => { await api("AccessService/RevokeApiKey", { id: k.id }); route(); }) }, "Revoke")),
    ),
  );
  show(h("h1", {}, "API keys"), form, msg, h("table", {}, h("tr", {}, ["Id", "Name", "Scopes", "Tenants", "Created", ""].map((x) => h("th", {}, x))), rows));
}

// ---- routing ---------------------------------------------------------------

async function route() {
  if (!sessionStorage.getItem(KEY)) return signIn();
  document.getElementById("nav").hidden = false;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "t" && parts[2] === "e") await endpointPage(parts[1], parts[3]);
    else if (parts[0] === "t") await endpoints(parts[1]);
    else if (parts[0] === "catalog") await catalog();
    else if (parts[0] === "cluster") await cluster();
    else if (parts[0] === "keys") await keys();
    else await tenants();
  } catch (e) {
    if (sessionStorage.getItem(KEY)) show(errorBox(e));
  }
}

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
route();
