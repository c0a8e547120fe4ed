// The omnigent web UI: plain ES modules, no framework, no build step. Every data call
// goes to /v1 with the bearer token kept in this tab's sessionStorage; URLs are relative.
import { unifiedDiff } from "/ui/diff.js";

const KEY = "omnigent.token";
const AGENT = { name: "web", terminals: { shell: { command: "bash" } } };
const view = document.getElementById("view");
let stopPolls = [];  // what the current view runs in the background

// --- token -------------------------------------------------------------------------------
// `omnigent serve` prints `http://host:port/#token=…`: a fragment never reaches the server,
// so the token is in no access log; we keep it and take it out of the address bar.
function takeTokenFromUrl() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search + "#/");
}
const token = () => sessionStorage.getItem(KEY);

// --- API ---------------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function errorOf(res) {
  let code = "http_" + res.status, message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) { code = body.error.code; message = body.error.message; }
  } catch { /* not JSON */ }
  return new ApiError(res.status, code, message);
}

async function api(method, path, body, raw = false) {
  const init = { method, headers: { Authorization: "Bearer " + token() } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let res;
  try { res = await fetch(path, init); }
  catch (e) { throw new ApiError(0, "network", "The server cannot be reached: " + e.message); }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401) { sessionStorage.removeItem(KEY); route(); }
    throw err;
  }
  return raw ? res : res.json();
}
const get = (path) => api("GET", path);
const q = (params) => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") s.set(k, v);
  const text = s.toString();
  return text ? "?" + text : "";
};
const encPath = (p) => p.split("/").map(encodeURIComponent).join("/");

// --- small DOM helpers ---------------------------------------------------------------------
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false)
    el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
const fmtBytes = (n) => n == null ? "" : n < 1024 ? `${n} B` : n < 2 ** 20 ? `${(n / 1024).toFixed(1)} KiB`
  : n < 2 ** 30 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 2 ** 30).toFixed(1)} GiB`;
const fmtTime = (s) => s ? new Date(s * 1000).toLocaleString() : "";

export function showError(e) {
  const msg = e instanceof ApiError || e instanceof Error ? e.message : String(e);
  document.getElementById("error-text").textContent = msg;
  document.getElementById("error").hidden = false;
}
function clearError() { document.getElementById("error").hidden = true; }
// run an action, showing its error in the banner instead of failing silently
const guard = (fn) => async (...args) => { try { await fn(...args); } catch (e) { showError(e); } };

function poll(fn, ms) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { if (!stopped) showError(e); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  const stop = () => { stopped = true; clearTimeout(timer); };
  stop.first = tick();  // settles once the first round has been shown
  stopPolls.push(stop);
  return stop;
}

// --- routing -------------------------------------------------------------------------------
async function route() {
  stopPolls.forEach((s) => s()); stopPolls = [];
  clearError();
  document.getElementById("signout").hidden = !token();
  if (!token()) return signIn();
  const hash = location.hash.replace(/^#\/?/, "");
  const [where, ...rest] = hash.split("/");
  try {
    if (where === "browse") await browse(decodeURIComponent(rest[0]));
    else if (where === "session") await sessionView(decodeURIComponent(rest[0]));
    else await home();
  } catch (e) { showError(e); }
  view.focus({ preventScroll: true });
}

// --- sign in -------------------------------------------------------------------------------
function signIn() {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true });
  const form = h("form", { class: "signin", onsubmit: guard(async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    try { await get("/v1/hosts"); } catch (e) { sessionStorage.removeItem(KEY); throw e; }
    location.hash = "#/"; route();
  }) },
    h("h1", {}, "Sign in"),
    h("label", { for: "token" }, "Bearer token"),
    input,
    h("p", { class: "notice" }, "Kept in this tab only (sessionStorage). `omnigent serve` prints a URL that signs you in."),
    h("button", { class: "primary", type: "submit" }, "Sign in"));
  view.replaceChildren(form);
  input.focus();
}

// --- home: hosts and sessions -----------------------------------------------------------------
async function home() {
  const hostsBody = h("tbody");
  const sessBody = h("tbody");
  const pager = h("div", { class: "row" });
  view.replaceChildren(
    h("h1", {}, "Hosts"),
    h("table", { "aria-label": "Hosts" },
      h("thead", {}, h("tr", {}, ["Name", "Status", "Platform", "CPUs", "Memory", "Runners", ""].map((t) => h("th", {}, t)))),
      hostsBody),
    h("h1", {}, "Sessions"),
    h("table", { "aria-label": "Sessions" },
      h("thead", {}, h("tr", {}, ["Title", "Status", "Workspace", "Branch", "Created", ""].map((t) => h("th", {}, t)))),
      sessBody),
    pager);
  const hostsPoll = poll(async () => {
    const { hosts } = await get("/v1/hosts");
    hostsBody.replaceChildren(...(hosts.length ? hosts.map((x) => h("tr", { "data-host": x.id },
      h("td", {}, x.name, h("div", { class: "notice" }, x.id)),
      h("td", { class: "status " + x.status }, x.status),
      h("td", {}, x.platform || ""),
      h("td", {}, x.cpus ?? ""),
      h("td", {}, fmtBytes(x.memory_bytes)),
      h("td", {}, x.runner_count),
      h("td", {}, h("a", { href: `#/browse/${encodeURIComponent(x.id)}`, "aria-label": `New session on ${x.name}` }, "New session…"))))
      : [h("tr", {}, h("td", { colspan: 7 }, "No hosts yet: join a machine with your join line."))]));
  }, 2000);
  let cursor = {};
  const loadSessions = async () => {
    const page = await get("/v1/sessions" + q({ limit: 20, ...cursor }));
    sessBody.replaceChildren(...(page.data.length ? page.data.map((s) => h("tr", { "data-session": s.id },
      h("td", {}, h("a", { href: `#/session/${encodeURIComponent(s.id)}` }, s.title || s.id)),
      h("td", { class: "status " + s.status }, s.status),
      h("td", {}, s.workspace || ""),
      h("td", {}, s.git_branch || ""),
      h("td", {}, fmtTime(s.created_at)),
      h("td", {}, h("button", { class: "danger", type: "button", "aria-label": `Delete session ${s.title || s.id}`,
        onclick: guard(async () => {
          if (!confirm(`Delete session ${s.title || s.id}? Its runner stops.`)) return;
          await api("DELETE", `/v1/sessions/${encodeURIComponent(s.id)}`);
          await loadSessions();
        }) }, "Delete"))))
      : [h("tr", {}, h("td", { colspan: 6 }, "No sessions: pick a host above to start one."))]));
    const newer = cursor.after || cursor.before;
    pager.replaceChildren(
      h("button", { type: "button", disabled: !newer || (cursor.before && !page.has_more), onclick: guard(async () => {
        cursor = { before: page.first_id }; await loadSessions(); }) }, "← Newer"),
      h("button", { type: "button", disabled: !(cursor.before ? true : page.has_more) || !page.last_id, onclick: guard(async () => {
        cursor = { after: page.last_id }; await loadSessions(); }) }, "Older →"));
  };
  await Promise.all([hostsPoll.first, poll(loadSessions, 5000).first]);
}

// --- workspace picker -----------------------------------------------------------------------------
async function browse(hostId) {
  const host = await get(`/v1/hosts/${encodeURIComponent(hostId)}`);
  let dir = "~", abs = null, showHidden = false;
  const crumbs = h("nav", { class: "crumbs row", "aria-label": "Folder path" });
  const list = h("ul", { class: "entries", "aria-label": "Folders and files" });
  const more = h("button", { type: "button", hidden: true }, "More…");
  const picked = h("output", { id: "picked" }, "");
  const hidden = h("input", { type: "checkbox", id: "hidden" });
  const title = h("input", { type: "text", id: "title", placeholder: "optional" });
  const useGit = h("input", { type: "checkbox", id: "use-git" });
  const branch = h("input", { type: "text", id: "branch", placeholder: "agent/my-change", disabled: true });
  useGit.addEventListener("change", () => { branch.disabled = !useGit.checked; });
  const launch = h("button", { type: "submit", class: "primary" }, "Launch");
  let lastId = null;

  const pathOf = (name) => (abs ?? dir) === "/" ? "/" + name : `${abs ?? dir}/${name}`;
  const render = (entries, append) => {
    const items = entries.filter((e) => showHidden || !e.name.startsWith(".")).map((e) => h("li", {},
      e.type === "directory"
        ? h("button", { type: "button", onclick: guard(() => open(e.path)) }, e.name + "/")
        : h("span", { class: "notice" }, e.name)));
    if (append) list.append(...items); else list.replaceChildren(...items);
  };
  const load = async (append) => {
    const rel = dir === "~" ? "" : "/" + encPath(dir.replace(/^\//, ""));
    const page = await get(`/v1/hosts/${encodeURIComponent(hostId)}/filesystem${rel}` + q({ limit: 100, after: append ? lastId : null }));
    if (page.data.length) abs = page.data[0].path.replace(/\/[^/]*$/, "") || "/";
    lastId = page.last_id;
    more.hidden = !page.has_more;
    render(page.data, append);
    if (!page.data.length && !append) list.replaceChildren(h("li", { class: "notice" }, "(empty folder)"));
  };
  const showCrumbs = () => {
    const parts = [h("button", { type: "button", onclick: guard(() => open("~")) }, "~ home")];
    if (abs || dir !== "~") {
      const full = abs ?? dir;
      const segs = full.split("/").filter(Boolean);
      parts.push(h("span", { "aria-hidden": "true" }, "|"), h("button", { type: "button", onclick: guard(() => open("/")) }, "/"));
      segs.forEach((s, i) => {
        const to = "/" + segs.slice(0, i + 1).join("/");
        parts.push(h("button", { type: "button", "aria-current": i === segs.length - 1 ? "location" : null, onclick: guard(() => open(to)) }, s),
          h("span", { "aria-hidden": "true" }, "/"));
      });
    }
    crumbs.replaceChildren(...parts);
    picked.textContent = abs ?? dir;
  };
  const open = async (path) => { dir = path; abs = path === "~" ? null : path; lastId = null; await load(false); showCrumbs(); };
  more.addEventListener("click", guard(() => load(true)));
  hidden.addEventListener("change", guard(async () => { showHidden = hidden.checked; lastId = null; await load(false); }));

  const form = h("form", { "aria-label": "Launch a session", onsubmit: guard(async (ev) => {
    ev.preventDefault();
    const body = { agent: AGENT, host_id: hostId, workspace: abs ?? dir };
    if (title.value.trim()) body.title = title.value.trim();
    if (useGit.checked) body.git = { branch_name: branch.value.trim() };
    launch.disabled = true; launch.textContent = "Launching…";
    try {
      const s = await api("POST", "/v1/sessions", body);
      location.hash = `#/session/${encodeURIComponent(s.id)}`;
    } finally { launch.disabled = false; launch.textContent = "Launch"; }
  }) },
    h("div", { class: "row" }, h("strong", {}, "Workspace: "), picked),
    h("div", { class: "row" }, h("label", { for: "title" }, "Title"), title),
    h("div", { class: "row" }, useGit, h("label", { for: "use-git" }, "New git worktree on branch"), h("label", { for: "branch", class: "visually-hidden" }, "Branch name"), branch),
    launch);
  view.replaceChildren(
    h("h1", {}, `New session on ${host.name}`),
    h("p", { class: "notice" }, `Host ${host.id}: `, h("span", { class: "status " + host.status }, host.status)),
    crumbs,
    h("div", { class: "row" }, hidden, h("label", { for: "hidden" }, "Show hidden files")),
    list, more, form);
  await open("~");
}

// --- session ---------------------------------------------------------------------------------------
async function sessionView(sid) {
  const base = `/v1/sessions/${encodeURIComponent(sid)}`;
  const env = `${base}/resources/environments/default`;
  const s = await get(base);
  const info = h("p", { class: "notice", id: "session-info" });
  const showInfo = (x) => info.replaceChildren(
    h("span", { class: "status " + x.status }, x.status), ` · ${x.workspace || "no workspace"}`,
    x.git_branch ? ` · branch ${x.git_branch}` : "", ` · ${x.host_id || "no host"}`);
  showInfo(s);
  poll(async () => showInfo(await get(base)), 3000);

  const panels = {}, tabs = {};
  const tablist = h("div", { role: "tablist", "aria-label": "Session views" });
  const select = (name) => {
    for (const [n, t] of Object.entries(tabs)) {
      t.setAttribute("aria-selected", String(n === name));
      t.tabIndex = n === name ? 0 : -1;
      panels[n].hidden = n !== name;
    }
    const p = panels[name]; if (p.onshow) p.onshow();
  };
  const names = ["Editor", "Changes", "Search", "Shell", "Files", "Terminals"];
  for (const n of names) {
    const id = n.toLowerCase();
    tabs[n] = h("button", { role: "tab", id: "tab-" + id, type: "button", "aria-controls": "panel-" + id, onclick: () => select(n),
      onkeydown: (ev) => {
        const i = names.indexOf(n), d = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
        if (d) { const next = names[(i + d + names.length) % names.length]; select(next); tabs[next].focus(); }
      } }, n);
    panels[n] = h("section", { role: "tabpanel", id: "panel-" + id, "aria-labelledby": "tab-" + id });
    tablist.append(tabs[n]);
  }
  const tree = h("div", { class: "tree" });
  const refresh = h("button", { type: "button", onclick: () => ctx.refreshTree() }, "Refresh files");
  view.replaceChildren(
    h("h1", {}, s.title || s.id), info,
    h("div", { class: "session" }, h("div", {}, h("div", { class: "row" }, refresh), tree),
      h("div", {}, tablist, ...Object.values(panels))));

  const ctx = { sid, base, env, select, panels, session: s };
  ctx.openFile = (path) => { select("Editor"); editor(ctx, path); };
  panels.Editor.append(h("p", { class: "notice" }, "Pick a file in the tree."));
  fileTree(ctx, tree);
  changesPanel(ctx);
  searchPanel(ctx);
  shellPanel(ctx);
  filesPanel(ctx);
  terminalsPanel(ctx);
  select("Editor");
}

// The file tree: a WAI-ARIA tree, loaded lazily a page at a time; arrow keys move,
// Right/Left open/close, Enter opens a file.
function fileTree(ctx, container) {
  const root = h("ul", { role: "tree", "aria-label": "Workspace files" });
  container.replaceChildren(root);
  const listing = async (path, after) => get(`${ctx.env}/filesystem${path ? "/" + encPath(path) : ""}` + q({ limit: 200, after }));
  const fill = async (ul, path, after) => {
    const page = await listing(path, after);
    if (page.object !== "list") return;
    ul.querySelector(":scope > .more")?.remove();
    for (const e of page.data) ul.append(item(e));
    if (page.has_more) {
      const more = h("li", { role: "treeitem", class: "more", tabindex: -1 }, h("span", { class: "label" }, "more…"));
      more.activate = guard(() => fill(ul, path, page.last_id));
      more.querySelector(".label").addEventListener("click", more.activate);
      ul.append(more);
    }
    if (!ul.children.length) ul.append(h("li", { role: "none", class: "notice" }, "(empty)"));
  };
  const item = (e) => {
    const dir = e.type === "directory";
    const li = h("li", { role: "treeitem", tabindex: -1, "data-path": e.path, "aria-label": e.name, "aria-expanded": dir ? "false" : null },
      h("span", { class: "label" }, e.name));
    li.activate = guard(async () => {
      if (dir) await toggle(li, e.path);
      else if (e.type === "file") { root.querySelectorAll("[aria-selected=true]").forEach((x) => x.removeAttribute("aria-selected")); li.setAttribute("aria-selected", "true"); ctx.openFile(e.path); }
    });
    li.querySelector(".label").addEventListener("click", () => { focusItem(li); li.activate(); });
    return li;
  };
  const toggle = async (li, path) => {
    if (li.getAttribute("aria-expanded") === "true") {
      li.setAttribute("aria-expanded", "false"); li.querySelector(":scope > ul").hidden = true; return;
    }
    let ul = li.querySelector(":scope > ul");
    if (!ul) { ul = h("ul", { role: "group" }); li.append(ul); await fill(ul, path); }
    ul.hidden = false; li.setAttribute("aria-expanded", "true");
  };
  const visible = () => [...root.querySelectorAll("[role=treeitem]")].filter((x) => x.offsetParent !== null);
  const focusItem = (li) => { root.querySelectorAll("[role=treeitem][tabindex='0']").forEach((x) => { x.tabIndex = -1; }); li.tabIndex = 0; li.focus(); };
  root.addEventListener("keydown", (ev) => {
    const items = visible(), cur = ev.target.closest("[role=treeitem]"), i = items.indexOf(cur);
    if (!cur) return;
    const dir = cur.hasAttribute("aria-expanded"), open = cur.getAttribute("aria-expanded") === "true";
    if (ev.key === "ArrowDown" && i < items.length - 1) focusItem(items[i + 1]);
    else if (ev.key === "ArrowUp" && i > 0) focusItem(items[i - 1]);
    else if (ev.key === "Home") focusItem(items[0]);
    else if (ev.key === "End") focusItem(items[items.length - 1]);
    else if (ev.key === "ArrowRight" && dir && !open) cur.activate();
    else if (ev.key === "ArrowRight" && dir && open && items[i + 1]) focusItem(items[i + 1]);
    else if (ev.key === "ArrowLeft" && dir && open) cur.activate();
    else if (ev.key === "ArrowLeft") { const up = cur.parentElement.closest("[role=treeitem]"); if (up) focusItem(up); }
    else if (ev.key === "Enter" || ev.key === " ") cur.activate();
    else return;
    ev.preventDefault();
  });
  guard(async () => { await fill(root, ""); const first = root.querySelector("[role=treeitem]"); if (first) first.tabIndex = 0; })();
  ctx.refreshTree = () => fileTree(ctx, container);
}

const b64bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name }); document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// --- syntax highlighting ------------------------------------------------------------------------
// The language from the file's name (highlight.js's names); unknown ones stay plain text, and
// so do files over HIGHLIGHT_MAX (highlighting them on every keystroke would lag).
const LANGS = {
  py: "python", js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "javascript", ts: "typescript",
  tsx: "typescript", json: "json", yaml: "yaml", yml: "yaml", md: "markdown", sh: "bash", bash: "bash",
  zsh: "bash", go: "go", rs: "rust", java: "java", kt: "kotlin", c: "c", h: "c", cc: "cpp", cpp: "cpp",
  cxx: "cpp", hpp: "cpp", cs: "csharp", html: "xml", htm: "xml", xml: "xml", svg: "xml", css: "css",
  scss: "scss", less: "less", toml: "ini", ini: "ini", cfg: "ini", sql: "sql", rb: "ruby", php: "php",
  lua: "lua", swift: "swift", r: "r", pl: "perl", diff: "diff", patch: "diff", graphql: "graphql",
};
const HIGHLIGHT_MAX = 200 * 1024;
function languageOf(path) {
  const name = path.split("/").pop();
  if (name === "Makefile") return "makefile";
  const ext = /\.([^.]+)$/.exec(name);
  return (ext && LANGS[ext[1].toLowerCase()]) || null;
}

// The textarea, with transparent text (its caret and selection show), over a <pre> holding the
// same text highlighted, kept in step as you type and scroll. The textarea alone is what you
// edit, what assistive technology reads and what is saved; the <pre> is aria-hidden.
function highlightedEditor(area, language) {
  const code = h("code");
  const pre = h("pre", { class: "hl", "aria-hidden": "true" }, code);
  const box = h("div", { class: "code-box" }, pre, area);
  area.setAttribute("wrap", "off");  // no wrapping: the two stay line for line
  // the trailing newline: a <pre> does not show the empty last line a textarea does
  let paint = (text) => { code.textContent = text + "\n"; };  // plain until highlight.js is here
  const sync = () => { pre.scrollTop = area.scrollTop; pre.scrollLeft = area.scrollLeft; };
  let queued = false;
  area.addEventListener("input", () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; paint(area.value); sync(); });
  });
  area.addEventListener("scroll", sync);
  paint(area.value);
  import("/ui/highlight.js").then(({ highlight }) => {
    paint = (text) => { code.innerHTML = highlight(text, language) + "\n"; };
    paint(area.value); sync();
    box.dataset.highlighted = language;
  }).catch(showError);
  return box;
}

async function editor(ctx, path) {
  const panel = ctx.panels.Editor;
  const url = `${ctx.env}/filesystem/${encPath(path)}`;
  panel.replaceChildren(h("p", { class: "notice" }, `Opening ${path}…`));
  const f = await get(url).catch((e) => { panel.replaceChildren(h("p", { role: "alert" }, e.message)); throw e; });
  const head = h("div", { class: "row" }, h("strong", { id: "open-path" }, path), h("span", { class: "notice" }, `${f.content_type} · ${fmtBytes(f.bytes)}`));
  if (f.encoding === "base64") {
    const blob = new Blob([b64bytes(f.content)], { type: f.content_type });
    const dl = h("button", { type: "button", onclick: () => download(path.split("/").pop(), blob) }, "Download");
    const body = f.content_type.startsWith("image/") && !f.truncated
      ? h("img", { class: "preview", alt: path, src: URL.createObjectURL(blob) })
      : h("p", {}, "Binary file." + (f.truncated ? " Only the first part of it is shown here." : ""));
    panel.replaceChildren(head, body, h("div", { class: "row" }, dl));
    return;
  }
  let original = f.content;
  const area = h("textarea", { class: "editor", id: "editor", "aria-label": `Contents of ${path}`, spellcheck: "false", readonly: f.truncated || null });
  area.value = f.content;
  const language = f.bytes <= HIGHLIGHT_MAX && !f.truncated ? languageOf(path) : null;
  const status = h("span", { role: "status", id: "save-status", class: "notice" });
  const conflict = h("div", { class: "conflict", role: "alert", hidden: true });
  const write = async () => {
    await api("PUT", url, { content: area.value });
    original = area.value; conflict.hidden = true;
    status.textContent = `Saved ${new Date().toLocaleTimeString()}`;
    ctx.refreshChanges?.();
  };
  const save = guard(async () => {
    status.textContent = "Saving…";
    let now = null;
    try { now = await get(url); } catch (e) { if (e.status !== 404) throw e; }
    if (now && now.content !== original) {
      status.textContent = "";
      conflict.replaceChildren(
        h("strong", {}, "Conflict: "), `${path} changed on disk since you opened it. `,
        h("button", { type: "button", class: "danger", onclick: guard(write) }, "Overwrite with my version"), " ",
        h("button", { type: "button", onclick: () => editor(ctx, path) }, "Discard mine and reload"));
      conflict.hidden = false;
      return;
    }
    await write();
  });
  area.addEventListener("keydown", (ev) => { if ((ev.ctrlKey || ev.metaKey) && ev.key === "s") { ev.preventDefault(); save(); } });
  panel.replaceChildren(head,
    f.truncated ? h("p", { class: "notice" }, "Too large to edit here: only the first MiB is shown.") : "",
    conflict, language ? highlightedEditor(area, language) : area,
    h("div", { class: "row" }, h("button", { type: "button", class: "primary", id: "save", disabled: f.truncated, onclick: save }, "Save"), status));
}

function changesPanel(ctx) {
  const panel = ctx.panels.Changes;
  const list = h("ul", { class: "entries", "aria-label": "Changed files" });
  const diff = h("div", { id: "diff" });
  panel.append(h("p", { class: "notice" }, "Files created, modified or deleted since the session started (live)."), list, diff);
  let shown = "";
  const showDiff = guard(async (path) => {
    const d = await get(`${ctx.env}/diff/${encPath(path)}`);
    const text = d.encoding === "utf-8" ? unifiedDiff(path, d.before, d.after)
      : `Binary file ${path} ${d.status}.`;
    const pre = h("pre", { class: "diff", "aria-label": `Diff of ${path}` });
    for (const line of text.split("\n")) {
      const cls = line.startsWith("@@") ? "hunk" : line.startsWith("+") && !line.startsWith("+++") ? "add"
        : line.startsWith("-") && !line.startsWith("---") ? "del" : null;
      pre.append(cls ? h("span", { class: cls }, line) : line + "\n");
    }
    diff.replaceChildren(h("h2", {}, `Diff: ${path}`), d.truncated ? h("p", { class: "notice" }, "Truncated: the start of the session's copy was too large to keep.") : "", pre);
  });
  const load = async () => {
    const page = await get(`${ctx.env}/changes`);
    const key = JSON.stringify(page.data.map((c) => [c.path, c.status, c.bytes, c.modified_at]));
    if (key === shown) return;
    shown = key;
    list.replaceChildren(...(page.data.length ? page.data.map((c) => h("li", {},
      h("span", { class: "badge " + c.status }, c.status), " ",
      h("button", { type: "button", onclick: () => showDiff(c.path) }, c.path)))
      : [h("li", { class: "notice" }, "No changes yet.")]));
  };
  ctx.refreshChanges = () => load().catch(showError);
  let stop = null;
  panel.onshow = () => { if (!stop) stop = poll(load, 2000); };
}

function searchPanel(ctx) {
  const panel = ctx.panels.Search;
  const qi = h("input", { type: "text", id: "search-q", placeholder: "part of a name" });
  const inc = h("input", { type: "text", id: "search-include", placeholder: "*.py, src/**" });
  const exc = h("input", { type: "text", id: "search-exclude", placeholder: "tests/**" });
  const out = h("ul", { class: "entries", "aria-label": "Search results" });
  const form = h("form", { onsubmit: guard(async (ev) => {
    ev.preventDefault();
    const r = await get(`${ctx.env}/search` + q({ q: qi.value, include: inc.value, exclude: exc.value, limit: 200 }));
    out.replaceChildren(...(r.data.length ? r.data.map((e) => h("li", {}, h("button", { type: "button", onclick: () => ctx.openFile(e.path) }, e.path)))
      : [h("li", { class: "notice" }, "Nothing found.")]));
    if (r.has_more || r.truncated) out.append(h("li", { class: "notice" }, "More results exist: narrow the search."));
  }) },
    h("div", { class: "row" }, h("label", { for: "search-q" }, "Name"), qi),
    h("div", { class: "row" }, h("label", { for: "search-include" }, "Include globs"), inc, h("label", { for: "search-exclude" }, "Exclude globs"), exc),
    h("button", { type: "submit", class: "primary" }, "Search"));
  panel.append(form, out);
}

function shellPanel(ctx) {
  const panel = ctx.panels.Shell;
  const cmd = h("input", { type: "text", id: "shell-command", size: 60, required: true });
  const timeout = h("input", { type: "number", id: "shell-timeout", min: 1, max: 3600, value: 120 });
  const out = h("div", { id: "shell-result", "aria-live": "polite" });
  const run = h("button", { type: "submit", class: "primary" }, "Run");
  const form = h("form", { onsubmit: guard(async (ev) => {
    ev.preventDefault();
    run.disabled = true; out.replaceChildren(h("p", { class: "notice" }, "Running…"));
    try {
      const r = await api("POST", `${ctx.env}/shell`, { command: cmd.value, timeout: Number(timeout.value) || 120 });
      out.replaceChildren(
        h("p", { id: "shell-exit" }, r.timed_out ? "Timed out (the command was killed)" : `Exit code ${r.exit_code}`, r.truncated ? " · output truncated" : ""),
        h("h3", {}, "stdout"), h("pre", { id: "shell-stdout" }, r.stdout),
        h("h3", {}, "stderr"), h("pre", { id: "shell-stderr" }, r.stderr));
      ctx.refreshChanges?.();
    } catch (e) { out.replaceChildren(); throw e; } finally { run.disabled = false; }
  }) },
    h("div", { class: "row" }, h("label", { for: "shell-command" }, "Command"), cmd,
      h("label", { for: "shell-timeout" }, "Timeout (s)"), timeout, run));
  panel.append(form, out);
}

function filesPanel(ctx) {
  const panel = ctx.panels.Files;
  const url = `${ctx.base}/resources/files`;
  const list = h("ul", { class: "entries", "aria-label": "Session files" });
  const progress = h("progress", { max: 100, value: 0, hidden: true, "aria-label": "Upload progress" });
  const status = h("span", { role: "status", id: "upload-status", class: "notice" });
  const input = h("input", { type: "file", id: "upload-input", multiple: true });
  const load = async () => {
    const page = await get(url + q({ limit: 100 }));
    list.replaceChildren(...(page.data.length ? page.data.map((f) => h("li", {},
      h("button", { type: "button", "aria-label": `Download ${f.name}`, onclick: guard(async () => {
        const res = await api("GET", `${url}/${encodeURIComponent(f.id)}/content`, undefined, true);
        download(f.name, await res.blob());
      }) }, f.name), " ", h("span", { class: "notice" }, fmtBytes(f.metadata?.bytes)), " ",
      h("button", { type: "button", class: "danger", "aria-label": `Delete ${f.name}`, onclick: guard(async () => {
        await api("DELETE", `${url}/${encodeURIComponent(f.id)}`); await load(); }) }, "Delete")))
      : [h("li", { class: "notice" }, "No files uploaded.")]));
  };
  // XMLHttpRequest, not fetch: it reports upload progress
  const upload = (file) => new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("Authorization", "Bearer " + token());
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = (100 * e.loaded) / e.total; };
    xhr.onload = () => {
      if (xhr.status < 300) return resolve();
      let msg = `${xhr.status} ${xhr.statusText}`;
      try { msg = JSON.parse(xhr.responseText).error.message; } catch { /* not JSON */ }
      reject(new ApiError(xhr.status, "upload", msg));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "The upload failed: the server cannot be reached"));
    const form = new FormData(); form.append("file", file, file.name);
    xhr.send(form);
  });
  const uploadAll = guard(async (files) => {
    for (const f of files) {
      progress.hidden = false; progress.value = 0; status.textContent = `Uploading ${f.name}…`;
      try { await upload(f); } finally { progress.hidden = true; }
      status.textContent = `Uploaded ${f.name}`;
    }
    await load();
  });
  input.addEventListener("change", () => { uploadAll([...input.files]); input.value = ""; });
  const drop = h("div", { class: "drop", id: "drop" }, "Drop files here, or ", h("label", { for: "upload-input" }, "choose files: "), input);
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); uploadAll([...ev.dataTransfer.files]); });
  panel.append(h("p", { class: "notice" }, "Files kept with the session on the server (not in the workspace)."), drop, h("div", { class: "row" }, progress, status), list);
  let loaded = false;
  panel.onshow = () => { if (!loaded) { loaded = true; load().catch(showError); } };
}

function terminalsPanel(ctx) {
  const panel = ctx.panels.Terminals;
  const declared = Object.keys(ctx.session.agent?.terminals || {});
  const tabs = h("div", { role: "tablist", "aria-label": "Open terminals" });
  const area = h("div");
  const running = h("ul", { class: "entries", "aria-label": "Running terminals" });
  const open = new Map();  // terminal id -> {tab, pane, view}
  let current = null;  // the terminal shown
  // leaving the session detaches (the terminals keep running on the host)
  stopPolls.push(() => { for (const t of open.values()) t.view.dispose(); open.clear(); });
  const show = (id) => {
    current = id; mover.hidden = !id;
    for (const [k, t] of open) { t.pane.hidden = k !== id; t.tab.setAttribute("aria-selected", String(k === id)); if (k === id) t.view.focus(); }
  };
  const drop = (id) => {  // detach and remove its tab
    const t = open.get(id);
    t.view.dispose(); t.pane.remove(); t.tab.remove(); open.delete(id);
    show([...open.keys()].pop() || null);
  };
  const attach = guard(async (res) => {
    if (open.has(res.id)) return show(res.id);
    const { TerminalView } = await import("/ui/term.js");
    const pane = h("div", { class: "term-pane" });
    area.append(pane);
    const tview = new TerminalView(pane, {
      url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${ctx.base}/resources/terminals/${encodeURIComponent(res.id)}/attach`,
      token: token(),
      onclose: async () => {
        await api("DELETE", `${ctx.base}/resources/terminals/${encodeURIComponent(res.id)}`).catch((e) => { if (e.status !== 404) showError(e); });
        drop(res.id); loadRunning();
      },
    });
    const tab = h("button", { role: "tab", type: "button", onclick: () => show(res.id) }, `${res.name} · ${res.metadata?.session_key || res.id}`);
    tabs.append(tab);
    open.set(res.id, { tab, pane, view: tview });
    show(res.id);
  });
  const loadRunning = async () => {
    const page = await get(`${ctx.base}/resources/terminals` + q({ limit: 100 }));
    running.replaceChildren(...(page.data.length ? page.data.map((t) => h("li", {},
      `${t.name} (${t.metadata?.session_key || t.id}) `, h("button", { type: "button", onclick: () => attach(t) }, "Attach")))
      : [h("li", { class: "notice" }, "No terminals running.")]));
  };
  const launch = guard(async (name) => {
    const key = "web-" + Math.random().toString(36).slice(2, 8);
    const res = await api("POST", `${ctx.base}/resources/terminals`, { terminal: name, session_key: key });
    await attach(res);
    await loadRunning();
  });

  // Move the terminal shown to another of your sessions with a live runner (transfer): it
  // keeps running there, and leaves this session.
  const targets = h("select", { id: "move-target" });
  const moved = h("span", { role: "status", id: "move-status", class: "notice" });
  const moveButton = h("button", { type: "button", disabled: true, onclick: () => move() }, "Move");
  const loadTargets = async () => {
    const page = await get("/v1/sessions" + q({ limit: 100 }));
    const others = page.data.filter((x) => x.id !== ctx.sid && x.status === "running");
    const key = JSON.stringify(others.map((x) => [x.id, x.title]));
    if (key === targets.dataset.key) return;  // unchanged: leave an open list alone
    targets.dataset.key = key;
    const keep = targets.value;
    targets.replaceChildren(...(others.length ? others.map((x) => h("option", { value: x.id }, x.title || x.id))
      : [h("option", { value: "" }, "(no other session with a runner)")]));
    if (others.some((x) => x.id === keep)) targets.value = keep;
    moveButton.disabled = !others.length;
  };
  targets.addEventListener("focus", () => loadTargets().catch(showError));
  const move = guard(async () => {
    const id = current, to = targets.value, title = targets.selectedOptions[0]?.textContent;
    if (!id || !to) return;
    moved.textContent = "";
    await api("POST", `${ctx.base}/resources/terminals/${encodeURIComponent(id)}/transfer`, { target_session_id: to });
    drop(id);
    moved.replaceChildren(`Moved to `, h("a", { href: `#/session/${encodeURIComponent(to)}` }, title), `: it keeps running there.`);
    await loadRunning();
  });
  const mover = h("div", { class: "row", hidden: true },
    h("label", { for: "move-target" }, "Move to session…"), targets, moveButton);

  panel.append(
    h("div", { class: "row" }, declared.length ? declared.map((n) => h("button", { type: "button", class: "primary", onclick: () => launch(n) }, `Open ${n}`))
      : h("span", { class: "notice" }, "This session's agent declares no terminals.")),
    h("h2", { class: "visually-hidden" }, "Running"), running, tabs, mover, moved, area);
  let loaded = false;
  panel.onshow = () => {
    if (!loaded) { loaded = true; loadRunning().catch(showError); }
    loadTargets().catch(showError);
    for (const t of open.values()) if (!t.pane.hidden) t.view.fit();
  };
}

// --- start ---------------------------------------------------------------------------------------
document.getElementById("error-close").addEventListener("click", clearError);
document.getElementById("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); location.hash = "#/"; route(); });
window.addEventListener("hashchange", () => { takeTokenFromUrl(); route(); });
window.addEventListener("unhandledrejection", (ev) => showError(ev.reason));
window.addEventListener("error", (ev) => { if (!/^ResizeObserver/.test(ev.message)) showError(ev.message); });
takeTokenFromUrl();
// `omnigentReady`: ms from navigation to the first view shown with its data (the tests
// measure the time to interactive with it)
route().then(() => { window.omnigentReady = performance.now(); document.body.dataset.ready = "1"; });
