// The imds dashboard. Plain JavaScript, no libraries: it reads and changes
// the server only through the dashboard's /api routes (the admin API), and
// builds every element with textContent so nothing from the server is ever
// parsed as HTML.
"use strict";

(function () {
  let csrf = "", csrfHeader = "X-Imds-Csrf";
  let stream = null; // the EventSource of the instance page
  let timer = null; // the refresh of the instances page
  const main = document.getElementById("main");
  const statusLine = document.getElementById("status");

  // el builds an element: el("a", {href: "#"}, "text", child, ...).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) {
      if (k === undefined || k === null || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }

  // api calls the dashboard API; an error answer becomes an Error with the
  // server's own message.
  async function api(method, path, body) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (method !== "GET") opts.headers[csrfHeader] = csrf;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch("api/" + path, opts);
    if (resp.status === 401) { location.reload(); throw new Error("logged out"); }
    const text = await resp.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
    if (!resp.ok) {
      const msg = data && data.error ? data.error.message : resp.status + " " + resp.statusText;
      throw new Error(msg);
    }
    return data;
  }

  const enc = encodeURIComponent;
  const fmtTime = (t) => {
    if (!t || t.startsWith("0001-")) return "";
    const d = new Date(t);
    return isNaN(d) ? t : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  };
  const ago = (t) => {
    if (!t || t.startsWith("0001-")) return "never";
    const s = Math.round((Date.now() - new Date(t)) / 1000);
    if (s < 60) return Math.max(s, 0) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  };
  function flash(node, msg, ok) {
    node.replaceChildren(msg ? el("div", { class: ok ? "notice" : "error", role: ok ? "status" : "alert" }, msg) : "");
  }

  // readiness says whether the instance could be switched to IMDSv2 only,
  // from its request report.
  function readiness(inst, rep) {
    if (!rep || !rep.requests) return el("span", { class: "badge" }, "no requests yet");
    if (rep.v1_requests > 0) return el("span", { class: "badge warn", title: "IMDSv1 requests: " + rep.v1_requests }, "uses IMDSv1 (" + rep.v1_requests + " of " + rep.requests + ")");
    if (inst.imdsv2 === "required") return el("span", { class: "badge ok" }, "IMDSv2 only");
    return el("span", { class: "badge ok" }, "ready for IMDSv2 only");
  }
  function addresses(inst) {
    const out = [...(inst.source_addresses || [])];
    for (const ni of inst.network_interfaces || []) {
      for (const a of ni.local_ipv4s || []) if (!out.includes(a)) out.push(a);
    }
    return out;
  }
  function eventBadges(inst) {
    const ev = inst.events || {};
    const out = [];
    if (ev.spot) out.push(el("span", { class: "badge bad" }, "spot " + ev.spot.action + " " + fmtTime(ev.spot.time)));
    if (ev.rebalance) out.push(el("span", { class: "badge warn" }, "rebalance"));
    for (const m of ev.maintenance || []) out.push(el("span", { class: "badge warn" }, m.code + " (" + m.state + ")"));
    if (inst.faults) out.push(el("span", { class: "badge bad", title: "faults in force" }, "faults: " + inst.faults));
    return out;
  }
  function setNav(which) {
    for (const id of ["nav-instances", "nav-server"]) {
      document.getElementById(id).classList.toggle("active", id === "nav-" + which);
    }
  }

  // ---- instances page ----
  async function instancesPage() {
    setNav("instances");
    const filter = el("input", { type: "search", id: "filter", placeholder: "Filter: name, address, role, source…", "aria-label": "Filter instances" });
    const body = el("tbody", { id: "instances-body" });
    const msg = el("div", { id: "instances-msg" });
    const formBox = el("div", { id: "add-box" });
    const table = el("table", { id: "instances" },
      el("thead", {}, el("tr", {}, ["Name", "Source", "Addresses", "Role", "IMDSv2", "Last request", "IMDSv1 readiness", "Events and faults"].map((h) => el("th", {}, h)))),
      body);
    main.replaceChildren(
      el("h1", {}, "Instances"),
      el("div", { class: "toolbar" }, filter,
        el("button", { type: "button", id: "add-instance", class: "primary", onclick: () => formBox.replaceChildren(instanceForm(null, () => { formBox.replaceChildren(); load(); })) }, "Add instance"),
        el("span", { class: "muted", id: "instances-count" })),
      formBox, msg, el("div", { class: "card" }, table));
    let rows = [];
    function render() {
      const q = filter.value.trim().toLowerCase();
      let shown = 0;
      for (const r of rows) {
        const hit = !q || r.text.includes(q);
        r.tr.hidden = !hit;
        if (hit) shown++;
      }
      document.getElementById("instances-count").textContent = shown + " of " + rows.length + " instances";
    }
    async function load() {
      try {
        const data = await api("GET", "overview");
        rows = data.instances.map(({ instance: inst, report: rep }) => {
          const role = inst.role ? inst.role.name : "";
          const addrs = addresses(inst);
          const tr = el("tr", { "data-name": inst.name },
            el("td", {}, el("a", { href: "#/i/" + enc(inst.name) }, inst.name), el("div", { class: "muted mono" }, inst.instance_id || "")),
            el("td", {}, inst.origin || ""),
            el("td", { class: "mono" }, addrs.join(", ")),
            el("td", {}, role || el("span", { class: "muted" }, "none")),
            el("td", {}, inst.imdsv2 || "optional"),
            el("td", { title: rep ? fmtTime(rep.last) : "" }, rep ? ago(rep.last) : "never"),
            el("td", {}, readiness(inst, rep)),
            el("td", {}, eventBadges(inst)));
          const text = [inst.name, inst.instance_id, inst.origin, role, inst.imdsv2, addrs.join(" "), inst.faults, JSON.stringify(inst.tags || {})].join(" ").toLowerCase();
          return { tr, text };
        });
        body.replaceChildren(...rows.map((r) => r.tr));
        flash(msg, data.reports_cut ? "Requests are shown for the first 2000 instances only; use imds report NAME for the others." : "", data.reports_cut);
        render();
      } catch (e) { flash(msg, e.message); }
    }
    filter.addEventListener("input", render);
    await load();
    timer = setInterval(load, 5000);
  }

  // instanceForm adds (inst null) or edits an instance through the admin
  // API, so the server's validation and messages apply as for the CLI.
  function instanceForm(inst, done) {
    const f = el("form", { class: "fields card", id: inst ? "edit-form" : "add-form" });
    const field = (label, name, value, hint, attrs) => {
      f.append(el("label", { for: "f-" + name }, label), el("input", Object.assign({ id: "f-" + name, name, value: value || "" }, attrs || {})));
      if (hint) f.append(el("div", { class: "hint" }, hint));
    };
    f.append(el("h2", {}, inst ? "Edit " + inst.name : "Add an instance"), el("span"));
    if (!inst) field("Name", "name", "", "", { required: true });
    field("IP addresses (--ip)", "ip", inst ? (inst.source_addresses || []).join(", ") : "", "source addresses of its requests, comma separated");
    field("MAC (--mac)", "mac", inst && inst.network_interfaces ? inst.network_interfaces[0].mac : "");
    field("Role (--role)", "role", inst && inst.role ? inst.role.name : "", inst ? "empty for no instance profile" : "empty for the default role");
    f.append(el("label", { for: "f-imdsv2" }, "IMDSv2 (--imdsv2)"),
      el("select", { id: "f-imdsv2", name: "imdsv2" }, ["optional", "required"].map((v) => el("option", { value: v, selected: inst && inst.imdsv2 === v }, v))));
    field("Instance type", "instance_type", inst ? inst.instance_type : "");
    field("Region", "region", inst ? inst.region : "");
    field("Host (--host)", "host", inst ? inst.host : "", "the imds host that alone serves it; empty for every host");
    field("Tags (--tag)", "tags", inst ? Object.entries(inst.tags || {}).map(([k, v]) => k + "=" + v).join(", ") : "", "KEY=VALUE, comma separated");
    const msg = el("div", { id: "form-msg" });
    f.append(el("span"), msg,
      el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", id: "form-submit" }, inst ? "Save" : "Add"),
        el("button", { type: "button", onclick: () => done(false) }, "Cancel")));
    const list = (s) => s.split(",").map((x) => x.trim()).filter((x) => x);
    const tags = (s) => Object.fromEntries(list(s).map((t) => { const i = t.indexOf("="); return i < 0 ? [t, ""] : [t.slice(0, i), t.slice(i + 1)]; }));
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const v = (n) => f.elements[n].value.trim();
      // The fields are the flags of imds instance add|set, checked by the
      // dashboard as the CLI checks them, then sent through the admin API.
      try {
        if (!inst) {
          const form = { name: v("name"), imdsv2: v("imdsv2") };
          if (v("ip")) form.ip = list(v("ip"));
          if (v("mac")) form.mac = v("mac");
          if (v("role")) form.role = v("role");
          if (v("instance_type")) form["instance-type"] = v("instance_type");
          if (v("region")) form.region = v("region");
          if (v("host")) form.host = v("host");
          if (v("tags")) form.tag = list(v("tags"));
          const added = await api("POST", "instances", form);
          done(true, added);
        } else {
          // Only what changed, as `imds instance set` sends only the flags given.
          const form = {};
          const oldTags = inst.tags || {};
          if (v("ip") !== (inst.source_addresses || []).join(", ")) form.ip = list(v("ip"));
          const oldMac = inst.network_interfaces ? inst.network_interfaces[0].mac || "" : "";
          if (v("mac") !== oldMac) form.mac = v("mac");
          if (v("role") !== (inst.role ? inst.role.name : "")) form.role = v("role");
          if (v("imdsv2") !== (inst.imdsv2 || "optional")) form.imdsv2 = v("imdsv2");
          if (v("instance_type") !== (inst.instance_type || "")) form["instance-type"] = v("instance_type");
          if (v("region") !== (inst.region || "")) form.region = v("region");
          if (v("host") !== (inst.host || "")) form.host = v("host");
          const nt = tags(v("tags"));
          const edits = [];
          for (const [k, val] of Object.entries(nt)) if (oldTags[k] !== val) edits.push(k + "=" + val);
          for (const k of Object.keys(oldTags)) if (!(k in nt)) edits.push(k + "-");
          if (edits.length) form.tag = edits;
          if (Object.keys(form).length === 0) { flash(msg, "Nothing changed."); return; }
          await api("PATCH", "instances/" + enc(inst.name), form);
          done(true);
        }
      } catch (e) { flash(msg, e.message); }
    });
    return f;
  }

  // ---- one instance ----
  async function instancePage(name) {
    setNav("instances");
    const msg = el("div", { id: "instance-msg" });
    main.replaceChildren(el("h1", {}, el("a", { href: "#/" }, "Instances"), " / ", name), msg);
    let inst;
    try { inst = await api("GET", "v1/instances/" + enc(name)); } catch (e) { flash(msg, e.message); return; }
    const details = el("div", { class: "card", id: "details" });
    const actions = el("div", { class: "card", id: "actions" });
    const tree = el("div", { class: "card", id: "tree" });
    const report = el("div", { class: "card", id: "report" });
    const reqs = el("div", { class: "card", id: "requests" });
    const editBox = el("div");
    main.append(el("div", { class: "grid" }, details, actions), editBox, el("div", { class: "grid" }, tree, report), reqs);

    function showDetails() {
      const role = inst.role ? inst.role.name : "none";
      details.replaceChildren(el("h2", {}, "Instance"),
        el("dl", { class: "kv" },
          el("dt", {}, "ID"), el("dd", { class: "mono" }, inst.instance_id || ""),
          el("dt", {}, "Source"), el("dd", {}, inst.origin || ""),
          el("dt", {}, "Addresses"), el("dd", { class: "mono" }, addresses(inst).join(", ")),
          el("dt", {}, "Role"), el("dd", {}, role),
          el("dt", {}, "IMDSv2"), el("dd", {}, inst.imdsv2 || "optional"),
          el("dt", {}, "Type / region"), el("dd", {}, (inst.instance_type || "") + " / " + (inst.region || "") + " " + (inst.availability_zone || "")),
          el("dt", {}, "User data"), el("dd", {}, inst.user_data_size !== undefined ? inst.user_data_size + " bytes (not shown)" : "none"),
          el("dt", {}, "Tags"), el("dd", {}, Object.entries(inst.tags || {}).map(([k, v]) => el("span", { class: "badge" }, k + "=" + v))),
          el("dt", {}, "Events and faults"), el("dd", { id: "events" }, eventBadges(inst).length ? eventBadges(inst) : el("span", { class: "muted" }, "none"))),
        el("div", { class: "buttons" },
          el("button", { type: "button", id: "edit", onclick: () => editBox.replaceChildren(instanceForm(inst, async (changed) => { editBox.replaceChildren(); if (changed) await refresh(); })) }, "Edit"),
          el("button", { type: "button", id: "remove", class: "danger", onclick: remove }, "Remove")));
    }
    async function refresh() {
      inst = await api("GET", "v1/instances/" + enc(name));
      showDetails();
    }
    async function remove() {
      if (!confirm("Remove instance " + name + "?")) return;
      try { await api("DELETE", "v1/instances/" + enc(name)); location.hash = "#/"; } catch (e) { flash(msg, e.message); }
    }
    const actMsg = el("div", { id: "action-msg" });
    async function act(label, body) {
      try {
        await api("POST", "v1/instances/" + enc(name) + "/events", body);
        await refresh();
        flash(actMsg, label + " issued.", true);
        browse(treePath);
      } catch (e) { flash(actMsg, e.message); }
    }
    const latency = el("input", { id: "fault-latency", placeholder: "200ms", size: 8, "aria-label": "latency" });
    const errRate = el("input", { id: "fault-error-rate", placeholder: "0.2", size: 5, "aria-label": "error rate" });
    const token = el("select", { id: "fault-token", "aria-label": "token fault" }, el("option", { value: "" }, "token ok"), el("option", { value: "refuse" }, "refuse tokens"), el("option", { value: "timeout" }, "token timeout"));
    const expired = el("input", { type: "checkbox", id: "fault-expired" });
    async function setFaults() {
      const f = {};
      if (latency.value.trim()) f.latency = latency.value.trim();
      if (errRate.value.trim()) f.error_rate = Number(errRate.value.trim());
      if (token.value) f.token = token.value;
      if (expired.checked) f.expired_credentials = true;
      try {
        await api("PUT", "v1/instances/" + enc(name) + "/faults", f);
        await refresh();
        flash(actMsg, "Faults set.", true);
      } catch (e) { flash(actMsg, e.message); }
    }
    async function clearFaults() {
      try { await api("DELETE", "v1/instances/" + enc(name) + "/faults"); await refresh(); flash(actMsg, "Faults cleared.", true); } catch (e) { flash(actMsg, e.message); }
    }
    const maintCode = el("select", { id: "maintenance-code", "aria-label": "maintenance code" }, ["system-reboot", "instance-reboot", "system-maintenance", "instance-retirement", "instance-stop"].map((c) => el("option", { value: c }, c)));
    const spotAction = el("select", { id: "spot-action", "aria-label": "spot action" }, ["terminate", "stop", "hibernate"].map((c) => el("option", { value: c }, c)));
    actions.replaceChildren(el("h2", {}, "Events"),
      el("div", { class: "buttons" },
        spotAction,
        el("button", { type: "button", id: "spot", onclick: () => act("Spot interruption", { type: "spot", action: spotAction.value }) }, "Spot interruption"),
        el("button", { type: "button", id: "rebalance", onclick: () => act("Rebalance recommendation", { type: "rebalance" }) }, "Rebalance recommendation")),
      el("div", { class: "buttons" }, maintCode,
        el("button", { type: "button", id: "maintenance", onclick: () => act("Maintenance", { type: "maintenance", code: maintCode.value }) }, "Schedule maintenance"),
        el("button", { type: "button", id: "clear-events", onclick: () => act("Clear", { type: "clear" }) }, "Clear events")),
      el("h2", {}, "Faults"),
      el("div", { class: "buttons" },
        el("label", {}, "latency ", latency), el("label", {}, "error rate ", errRate), token,
        el("label", {}, expired, " expired credentials")),
      el("div", { class: "buttons" },
        el("button", { type: "button", id: "set-faults", onclick: setFaults }, "Set faults"),
        el("button", { type: "button", id: "clear-faults", onclick: clearFaults }, "Clear faults")),
      actMsg);
    showDetails();

    // The metadata tree, as the instance sees it (secrets masked).
    let treePath = "latest/meta-data/";
    async function browse(path) {
      treePath = path;
      const parts = path.split("/").filter((p) => p);
      const crumbs = el("div", { class: "crumbs mono", id: "tree-path" }, el("a", { onclick: () => browse("") }, "/"));
      parts.forEach((p, i) => {
        crumbs.append(el("a", { onclick: () => browse(parts.slice(0, i + 1).join("/") + "/") }, p), "/");
      });
      const out = el("div", { id: "tree-body" });
      tree.replaceChildren(el("h2", {}, "Metadata, as the instance sees it"), crumbs, out);
      try {
        const doc = await api("GET", "v1/instances/" + enc(name) + "/metadata?path=" + enc(path));
        if (doc.dir) {
          out.append(el("ul", { class: "tree" }, (doc.entries || []).map((e) => {
            const key = e.includes("=") ? e.split("=")[0] : e; // public-keys/0=name lists as 0
            return el("li", {}, el("a", { onclick: () => browse(path.replace(/\/?$/, "/").replace(/^\//, "") + key) }, e));
          })));
        } else if (doc.hidden) {
          out.append(el("p", { class: "muted" }, doc.size + " bytes, not shown (user data can hold secrets)."));
        } else {
          out.append(el("pre", { id: "tree-value" }, doc.body || ""));
          if (doc.masked) out.append(el("p", { class: "muted" }, "Secret fields are masked."));
        }
      } catch (e) { flash(out, e.message); }
    }
    browse(treePath);

    // The request report (imds report).
    async function showReport() {
      let rep = null;
      try { rep = await api("GET", "v1/instances/" + enc(name) + "/report"); } catch (e) { rep = null; }
      if (!rep) { report.replaceChildren(el("h2", {}, "Report"), el("p", { class: "muted" }, "No requests recorded yet.")); return; }
      report.replaceChildren(el("h2", {}, "Report"),
        el("p", {}, readiness(inst, rep), " ", rep.requests + " requests (" + rep.v1_requests + " IMDSv1, " + rep.v2_requests + " IMDSv2, " + rep.errors + " errors), last " + ago(rep.last)),
        el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Path"), el("th", {}, "Requests"), el("th", {}, "IMDSv1"))),
          el("tbody", {}, (rep.paths || []).slice(0, 20).map((p) => el("tr", {}, el("td", { class: "mono" }, p.path), el("td", {}, p.requests), el("td", {}, p.v1 ? el("span", { class: "badge warn" }, p.v1) : "0"))))),
        el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "User agent"), el("th", {}, "Requests"), el("th", {}, "IMDSv1"))),
          el("tbody", {}, (rep.user_agents || []).slice(0, 10).map((a) => el("tr", {}, el("td", { class: "mono" }, a.user_agent), el("td", {}, a.requests), el("td", {}, a.v1))))));
    }
    showReport();

    // Its requests, live.
    const rbody = el("tbody", {});
    const live = el("span", { class: "badge", id: "live" }, "connecting");
    reqs.replaceChildren(el("h2", {}, "Requests ", live),
      el("table", { id: "requests-table" }, el("thead", {}, el("tr", {}, ["Time", "Remote", "API", "Method", "Path", "Status", "ms", "Fault", "User agent"].map((h) => el("th", {}, h)))), rbody));
    const addReq = (r) => {
      rbody.prepend(el("tr", {}, el("td", {}, fmtTime(r.time)), el("td", {}, r.remote), el("td", {}, r.api), el("td", {}, r.method), el("td", {}, r.path),
        el("td", {}, el("span", { class: "badge " + (r.status < 400 ? "ok" : "bad") }, r.status)), el("td", {}, r.latency_ms.toFixed(1)), el("td", {}, r.fault || ""), el("td", {}, r.user_agent)));
      while (rbody.children.length > 200) rbody.lastChild.remove();
    };
    try {
      const recent = await api("GET", "v1/requests?instance=" + enc(name) + "&limit=50");
      for (const r of recent.requests || []) addReq(r);
    } catch (e) { /* none yet */ }
    let reportTimer = null;
    stream = new EventSource("api/stream?instance=" + enc(name));
    stream.onopen = () => { live.textContent = "live"; live.className = "badge ok"; };
    stream.onerror = () => { live.textContent = "reconnecting"; live.className = "badge warn"; };
    stream.onmessage = (ev) => {
      addReq(JSON.parse(ev.data));
      if (!reportTimer) reportTimer = setTimeout(() => { reportTimer = null; showReport(); }, 1000);
    };
  }

  // ---- the server ----
  async function serverPage() {
    setNav("server");
    const msg = el("div");
    main.replaceChildren(el("h1", {}, "Server"), msg);
    let s;
    try { s = await api("GET", "v1/server"); } catch (e) { flash(msg, e.message); return; }
    const kv = (pairs) => el("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { class: "mono" }, v)]));
    const rotMsg = el("div");
    async function rotate(role) {
      try { await api("POST", "v1/credentials/rotate?role=" + enc(role)); flash(rotMsg, "Credentials of " + role + " rotated.", true); setTimeout(serverPage, 500); } catch (e) { flash(rotMsg, e.message); }
    }
    const net = s.vm_network;
    main.append(el("div", { class: "grid" },
      el("div", { class: "card", id: "listeners" }, el("h2", {}, "Listeners"), kv([
        ["Version", s.version || "unknown"],
        ["Metadata", (s.listen || []).join(", ")],
        ["Admin socket", s.admin_socket || "none"],
        ["Admin TCP", s.admin_tcp || "none"],
        ["Data directory", s.data_dir || ""],
        ["Config file", s.config_path || "none"],
        ["Instances", String(s.instances)]])),
      el("div", { class: "card", id: "vm-network" }, el("h2", {}, "VM network"), net ? kv([
        ["Bridge", net.bridge], ["Subnet", net.subnet], ["Gateway", net.gateway], ["Domain", net.domain], ["dnsmasq", net.managed ? "managed by imds" : "run by you"]])
        : el("p", { class: "muted" }, "No vm_network in the configuration.")),
      el("div", { class: "card", id: "store" }, el("h2", {}, "Store"), storeKV(s, kv))),
    el("div", { class: "card", id: "roles" }, el("h2", {}, "Roles and their credentials"),
      el("p", { class: "muted" }, "Secrets are never shown; the access key ID is shortened."),
      el("table", {}, el("thead", {}, el("tr", {}, ["Role", "Source", "Instances", "State", "Access key", "Updated", "Expires", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, (s.roles || []).map((r) => el("tr", {},
          el("td", {}, r.name), el("td", {}, r.source), el("td", {}, r.instances),
          el("td", {}, el("span", { class: "badge " + (r.state === "ok" ? "ok" : "bad"), title: r.error || "" }, r.state), r.error ? el("div", { class: "muted" }, r.error) : ""),
          el("td", { class: "mono" }, r.access_key_id || ""), el("td", {}, fmtTime(r.last_updated)), el("td", {}, fmtTime(r.expiration)),
          el("td", {}, r.instances ? el("button", { type: "button", onclick: () => rotate(r.name) }, "Rotate") : ""))))),
      rotMsg),
    el("div", { class: "card", id: "unknown" }, el("h2", {}, "Unknown requesters (recent)"),
      (s.unknown_requesters || []).length === 0 ? el("p", { class: "muted" }, "None: every request matched an instance.") :
        el("table", {}, el("thead", {}, el("tr", {}, ["Address", "Requests", "Last", "Last path", "User agent"].map((h) => el("th", {}, h)))),
          el("tbody", {}, s.unknown_requesters.map((u) => el("tr", {}, el("td", { class: "mono" }, u.address), el("td", {}, u.requests),
            el("td", {}, ago(u.last)), el("td", { class: "mono" }, u.last_path), el("td", { class: "mono" }, u.user_agent)))))));
  }

  // storeKV describes where the instances are kept: the bolt file, or the
  // etcd cluster with whether it answers (the host serves its last list
  // and refuses changes while it does not).
  function storeKV(s, kv) {
    const st = s.store;
    if (!st) return kv([["Backend", "not reported"]]);
    const rows = [["Backend", st.backend]];
    if (st.backend === "etcd") {
      const answers = st.online === undefined ? "unknown" : (st.online ? "answers" : "DOES NOT ANSWER: serving the last list, refusing changes");
      rows.push(["Endpoints", (st.endpoints || []).join(", ")], ["Prefix", st.prefix || ""], ["etcd", answers],
        ["Revision", String(st.revision || 0)], ["Last answer", st.last_contact ? fmtTime(st.last_contact) : "never"],
        ["Resyncs", String(st.resyncs || 0)], ["Lease", st.lease || "none held"]);
    } else {
      rows.push(["File", st.path || ""]);
    }
    rows.push(["Host name", st.host || ""]);
    return kv(rows);
  }

  async function route() {
    if (stream) { stream.close(); stream = null; }
    if (timer) { clearInterval(timer); timer = null; }
    const h = location.hash.replace(/^#/, "") || "/";
    try {
      if (h.startsWith("/i/")) await instancePage(decodeURIComponent(h.slice(3)));
      else if (h === "/server") await serverPage();
      else await instancesPage();
      statusLine.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      main.replaceChildren(el("div", { class: "error" }, e.message));
    }
  }

  // A failure of the page itself shows in the status line rather than only
  // in the console.
  const pageError = (msg) => { statusLine.textContent = "page error: " + msg; statusLine.classList.add("bad"); };
  window.addEventListener("error", (e) => pageError(e.message));
  window.addEventListener("unhandledrejection", (e) => pageError(e.reason && e.reason.message ? e.reason.message : String(e.reason)));

  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("POST", "logout"); } catch (e) { /* reloads below */ }
    location.reload();
  });

  (async () => {
    try {
      const s = await api("GET", "session");
      csrf = s.csrf; csrfHeader = s.header;
    } catch (e) { return; }
    window.addEventListener("hashchange", route);
    route();
  })();
})();
