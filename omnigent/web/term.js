// A terminal tab: xterm.js attached to the terminal's WebSocket (loaded only when a
// terminal is opened, so the first page load stays small). The token goes in the first
// text frame (browsers cannot set headers on a WebSocket); binary frames carry the bytes;
// a text frame {"type": "resize"} follows the window. On attach the server replays the
// scrollback, so a re-attach starts from a clean screen. A dropped connection is retried
// with back-off; 4401 / 4404 (not signed in / the terminal ended) are final.
import { Terminal } from "/ui/vendor/xterm.mjs";
import { FitAddon } from "/ui/vendor/addon-fit.mjs";

const css = document.createElement("link");
css.rel = "stylesheet"; css.href = "/ui/vendor/xterm.css";
if (!document.querySelector('link[href="/ui/vendor/xterm.css"]')) document.head.append(css);

const FINAL = { 4401: "not signed in", 4404: "the terminal has ended" };

export class TerminalView {
  constructor(pane, { url, token, onclose }) {
    pane.terminalView = this;  // for the tests (to drop the connection)
    this.url = url; this.token = token; this.readOnly = false; this.retry = 0; this.closed = false;
    this.status = document.createElement("span");
    this.status.className = "notice"; this.status.setAttribute("role", "status");
    const bar = document.createElement("div"); bar.className = "row";
    const ro = document.createElement("input"); ro.type = "checkbox"; ro.id = "ro-" + Math.random().toString(36).slice(2);
    const roLabel = document.createElement("label"); roLabel.htmlFor = ro.id; roLabel.textContent = "Read-only";
    ro.addEventListener("change", () => { this.readOnly = ro.checked; this.connect(); });
    const again = document.createElement("button"); again.type = "button"; again.textContent = "Reconnect";
    again.addEventListener("click", () => this.connect());
    const close = document.createElement("button"); close.type = "button"; close.className = "danger"; close.textContent = "Close terminal";
    close.addEventListener("click", () => { close.disabled = true; onclose(); });
    bar.append(ro, roLabel, again, close, this.status);
    this.box = document.createElement("div"); this.box.className = "term";
    pane.append(bar, this.box);
    this.term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, screenReaderMode: false });
    this.fitter = new FitAddon();
    this.term.loadAddon(this.fitter);
    this.term.open(this.box);
    this.enc = new TextEncoder();
    this.term.onData((d) => { if (!this.readOnly && this.ws?.readyState === 1) this.ws.send(this.enc.encode(d)); });
    this.term.onResize(({ cols, rows }) => this.sendSize(cols, rows));
    this.onWindowResize = () => this.fit();
    window.addEventListener("resize", this.onWindowResize);
    this.fit();
    this.connect();
  }

  fit() { try { this.fitter.fit(); } catch { /* hidden */ } }
  focus() { this.term.focus(); }
  sendSize(cols, rows) {
    if (this.ws?.readyState === 1 && !this.readOnly) this.ws.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  connect() {
    clearTimeout(this.timer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); }
    this.term.reset();  // the server replays the scrollback
    const ws = new WebSocket(this.url + (this.readOnly ? "?read_only=true" : ""));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.status.textContent = "connecting…";
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "auth", token: this.token }));
      this.retry = 0;
      this.status.textContent = this.readOnly ? "attached (read-only)" : "attached";
      this.box.dataset.attached = "1";
      this.sendSize(this.term.cols, this.term.rows);
    };
    ws.onmessage = (ev) => { if (typeof ev.data !== "string") this.term.write(new Uint8Array(ev.data)); };
    ws.onclose = (ev) => {
      this.box.dataset.attached = "0";
      if (this.closed) return;
      if (FINAL[ev.code]) { this.status.textContent = `closed: ${FINAL[ev.code]}`; return; }
      const wait = Math.min(5000, 500 * 2 ** this.retry++);
      this.status.textContent = `disconnected (${ev.code}); reconnecting in ${(wait / 1000).toFixed(1)} s…`;
      this.timer = setTimeout(() => this.connect(), wait);
    };
  }

  dispose() {
    this.closed = true; clearTimeout(this.timer);
    window.removeEventListener("resize", this.onWindowResize);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); }
    this.term.dispose();
  }
}
