// speakerid console: plain JavaScript over the same HTTP API as every client, with the same keys.
// The key lives in sessionStorage (this tab only), never in a URL. Microphone audio is recorded in
// the page and sent as 16 kHz mono 16-bit WAV.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { role: null, clips: [], probe: null, auditOffset: 0 };
const PAGE = 20;
const plural = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;

// -- talking to the API -------------------------------------------------------------------------
async function api(method, path, body, headers = {}) {
  const key = sessionStorage.getItem("speakerid-key") || "";
  const response = await fetch(path, {
    method, body, headers: { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...headers },
  });
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error((data && data.error) || `${response.status}`);
  return data;
}

function clipsForm(clips) {
  const form = new FormData();
  clips.forEach((clip) => form.append("file", clip.blob, clip.name));
  return form;
}

// -- screens ------------------------------------------------------------------------------------
function show(screen) {
  document.querySelectorAll(".screen").forEach((s) => { s.hidden = s.id !== screen; });
  document.querySelectorAll("nav button[data-screen]").forEach((b) => b.classList.toggle("current", b.dataset.screen === screen));
  const load = { speakers: loadSpeakers, access: loadAccess, evaluation: loadEvaluation, identify: loadThreshold }[screen];
  if (load) load().catch((e) => report(screen, e));
}

function report(screen, error) {
  const target = { access: "access-error", enroll: "enroll-result", identify: "probe-result" }[screen];
  if (target) $(target).textContent = `Error: ${error.message}`;
}

async function login(key) {
  sessionStorage.setItem("speakerid-key", key);
  try {
    const me = await api("GET", "/v1/whoami");
    state.role = me.role;
    $("who").textContent = me.key_id ? `key ${me.key_id} (${me.role})` : "open server (admin)";
    document.querySelectorAll("nav .admin").forEach((b) => { b.hidden = me.role !== "admin"; });
    $("nav").hidden = false;
    show(me.role === "admin" ? "speakers" : "identify");
  } catch (e) {
    sessionStorage.removeItem("speakerid-key");
    $("login-error").textContent = `Sign-in failed: ${e.message}`;
  }
}

// -- speakers ------------------------------------------------------------------------------------
async function loadSpeakers() {
  const { speakers } = await api("GET", "/v1/speakers");
  const rows = $("speaker-rows");
  rows.replaceChildren();
  for (const s of speakers) {
    const tr = document.createElement("tr");
    for (const value of [s.name, s.clips, s.speech_seconds.toFixed(1), s.model || "", s.created.slice(0, 19)]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    const actions = document.createElement("td");
    const details = button("Details", async () => {
      $("speaker-detail").textContent = JSON.stringify(await api("GET", `/v1/speakers/${encodeURIComponent(s.name)}`), null, 2);
    });
    const remove = button("Remove", async () => {
      if (!confirm(`Erase ${s.name}'s voiceprint? This cannot be undone.`)) return;
      await api("DELETE", `/v1/speakers/${encodeURIComponent(s.name)}`);
      await loadSpeakers();
    });
    remove.className = "remove";
    actions.append(details, remove);
    tr.append(actions);
    rows.append(tr);
  }
}

function button(text, action) {
  const b = document.createElement("button");
  b.textContent = text;
  b.addEventListener("click", () => action().catch((e) => alert(e.message)));
  return b;
}

// -- recording: microphone -> 16 kHz mono WAV ----------------------------------------------------------
class Recorder {
  constructor(meter) { this.meter = meter; }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    this.context = new AudioContext();
    this.source = this.context.createMediaStreamSource(this.stream);
    this.node = this.context.createScriptProcessor(4096, 1, 1);
    this.chunks = [];
    this.node.onaudioprocess = (event) => {
      const data = event.inputBuffer.getChannelData(0);
      this.chunks.push(new Float32Array(data));
      if (this.onChunk) this.onChunk(data, this.context.sampleRate);
      let peak = 0;
      for (const x of data) peak = Math.max(peak, Math.abs(x));
      this.meter.value = peak;
    };
    this.source.connect(this.node);
    this.node.connect(this.context.destination);
    this.started = performance.now();
  }

  seconds() { return this.chunks ? this.chunks.reduce((n, c) => n + c.length, 0) / this.context.sampleRate : 0; }

  async stop() {
    this.node.disconnect();
    this.source.disconnect();
    this.stream.getTracks().forEach((t) => t.stop());
    const rate = this.context.sampleRate;
    await this.context.close();
    this.meter.value = 0;
    return wav(downsample(concat(this.chunks), rate, 16000), 16000);
  }
}

function concat(chunks) {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) { out.set(c, offset); offset += c.length; }
  return out;
}

function downsample(samples, from, to) {
  if (from === to) return samples;
  const ratio = from / to;
  const out = new Float32Array(Math.floor(samples.length / ratio));
  for (let i = 0; i < out.length; i++) {  // average over each output sample's span: a simple low-pass
    const a = Math.floor(i * ratio), b = Math.min(samples.length, Math.floor((i + 1) * ratio));
    let sum = 0;
    for (let j = a; j < b; j++) sum += samples[j];
    out[i] = sum / Math.max(1, b - a);
  }
  return out;
}

function wav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, x)) * 32767, true));
  return new Blob([buffer], { type: "audio/wav" });
}

// -- enroll --------------------------------------------------------------------------------------------
const enrollRecorder = new Recorder(null);

// While a clip is recorded, its audio also goes to the live stream in "enroll" mode without a name:
// the server says every second how good the voiceprint would be, and writes nothing.
function liveQuality(rate) {
  const key = sessionStorage.getItem("speakerid-key") || "";
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`);
  const waiting = [];
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "start", mode: "enroll", sample_rate: rate, ...(key ? { key } : {}) }));
    waiting.splice(0).forEach((frame) => ws.send(frame));
  };
  ws.onmessage = (message) => {
    const report = JSON.parse(message.data);
    if (report.type !== "quality") return;
    const before = Number($("speech-total").textContent) || 0;
    $("enroll-progress").value = Math.min(1, (before + report.speech_seconds) / report.goal_seconds);
    $("enroll-live").textContent = `this clip: ${report.speech_seconds.toFixed(1)} s of speech` +
      (report.agreement == null ? "" : `, its parts agree ${report.agreement.toFixed(2)}`) + ` — ${report.advice.join("; ")}`;
  };
  ws.onclose = (event) => { if (event.code !== 1000 && event.reason) $("enroll-live").textContent = `live feedback stopped: ${event.reason}`; };
  return {
    send(data) {
      const pcm = new Int16Array(data.length);
      data.forEach((x, i) => { pcm[i] = Math.max(-1, Math.min(1, x)) * 32767; });
      if (ws.readyState === WebSocket.OPEN) ws.send(pcm.buffer); else if (ws.readyState === WebSocket.CONNECTING) waiting.push(pcm.buffer);
    },
    end() { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" })); },
  };
}

async function checkClips() {
  if (!state.clips.length) return;
  const result = await api("POST", "/v1/quality", clipsForm(state.clips));
  const list = $("enroll-clips");
  list.replaceChildren();
  result.clips.forEach((r, i) => {
    const li = document.createElement("li");
    const ok = r.problems.length === 0;
    li.className = ok ? "ok" : "problem";
    li.textContent = `${state.clips[i].name}: ${r.speech_seconds ?? 0} s of speech` +
      (r.level_dbfs !== undefined ? `, ${r.level_dbfs} dBFS` : "") + (ok ? " — good" : ` — ${r.problems.join("; ")}`);
    li.append(button("drop", async () => { state.clips.splice(i, 1); $("enroll-clips").replaceChildren(); await checkClips(); }));
    list.append(li);
  });
  $("speech-total").textContent = result.speech_seconds.toFixed(1);
  $("speech-needed").textContent = result.needed;
}

async function enroll() {
  const name = $("enroll-name").value.trim();
  if (!name || !state.clips.length) { $("enroll-result").textContent = "Give a name and at least one clip."; return; }
  const result = await api("POST", `/v1/speakers/${encodeURIComponent(name)}/enrollments`, clipsForm(state.clips));
  const q = result.quality || {};
  const expected = q.expected_accept == null ? "" : `, new recordings expected to be named ${Math.round(100 * q.expected_accept)} % of the time`;
  $("enroll-result").textContent = `Enrolled ${result.speaker}: ${plural(result.clips, "clip")}, ${result.speech_seconds} s of speech` +
    `${q.agreement == null ? "" : `, clips agree ${q.agreement.toFixed(2)}`}${expected}. ${(q.advice || []).join("; ")}` +
    (result.warnings.length ? ` Warning: ${result.warnings.join("; ")}` : "");
  state.clips = [];
  $("enroll-clips").replaceChildren();
}

// -- identify / verify / access ------------------------------------------------------------------------------
const probeRecorder = new Recorder(null);

async function loadThreshold() {
  const t = await api("GET", "/v1/threshold");
  $("threshold-basis").textContent = `Identify and verify: ${t.description}`;
}

async function ask() {
  const form = clipsForm([state.probe]);
  const claim = $("probe-claim").value.trim(), resource = $("probe-resource").value.trim();
  let path;
  if (resource) path = `/v1/access/check?resource=${encodeURIComponent(resource)}` + (claim ? `&claim=${encodeURIComponent(claim)}` : "");
  else if (claim) path = `/v1/verify?speaker=${encodeURIComponent(claim)}`;
  else path = "/v1/identify";
  const r = await api("POST", path, form);
  const out = $("probe-result");
  out.replaceChildren();
  const answer = document.createElement("p");
  answer.className = "answer";
  if (resource) answer.textContent = `${r.allow ? "ALLOW" : "DENY"}` + (r.speaker ? ` ${r.speaker}` : "") +
    (r.score === null ? "" : ` (score ${r.score.toFixed(3)})`) + `: ${r.reason}`;
  else if (claim) answer.textContent = `${r.speaker}: ${r.accepted ? "accepted" : "rejected"} (score ${r.score.toFixed(3)})`;
  else answer.textContent = r.speaker ? `${r.speaker} (score ${r.score.toFixed(3)})` : `unknown (${r.reason})`;
  answer.id = "probe-answer";
  out.append(answer);
  const detail = document.createElement("p");
  detail.textContent = `threshold ${r.threshold}` + (resource ? ` (${resource}'s)` : "") + (r.candidates ? `; candidates: ${r.candidates.map((c) => `${c.speaker} ${c.score.toFixed(3)}`).join(", ")}` : "");
  out.append(detail);
}

// -- access ---------------------------------------------------------------------------------------------------
async function loadAccess() {
  $("access-error").textContent = "";
  const { resources, groups, lockout } = await api("GET", "/v1/access/resources");
  const rows = $("resource-rows");
  rows.replaceChildren();
  for (const r of resources) {
    const tr = document.createElement("tr");
    for (const v of [r.resource, r.threshold.toFixed(3), r.far === null ? "-" : `${(r.far * 100).toFixed(2)} %`, r.allowed.join(", ")]) {
      const td = document.createElement("td"); td.textContent = v; tr.append(td);
    }
    rows.append(tr);
  }
  $("groups").textContent = Object.entries(groups).map(([g, m]) => `@${g}: ${m.join(", ")}`).join("   ") +
    `   (lockout after ${lockout.attempts} denials in ${lockout.seconds} s)`;
  await loadAudit();
}

async function loadAudit() {
  const params = new URLSearchParams({ limit: PAGE, offset: state.auditOffset });
  for (const [id, key] of [["audit-since", "since"], ["audit-resource", "resource"], ["audit-decision", "decision"]]) {
    if ($(id).value) params.set(key, $(id).value);
  }
  const { decisions } = await api("GET", `/v1/audit?${params}`);
  const rows = $("audit-rows");
  rows.replaceChildren();
  for (const d of decisions) {
    const tr = document.createElement("tr");
    for (const v of [d.time.slice(0, 19), d.allow ? "allow" : "deny", d.resource, d.claim || "-", d.speaker || "-",
      d.score === null ? "-" : d.score.toFixed(3), d.key_id || "-", d.reason]) {
      const td = document.createElement("td"); td.textContent = v; tr.append(td);
    }
    rows.append(tr);
  }
  $("audit-page").textContent = String(state.auditOffset / PAGE + 1);
}

// -- evaluation ------------------------------------------------------------------------------------------------
const pct = (x) => (x == null ? "" : `${(100 * x).toFixed(2)} %`);
const num = (x, digits = 3) => (x == null ? "" : Number(x).toFixed(digits));

// The figures of a `speakerid eval voxceleb` run as a table people read: one row per measure.
function evaluationTable(result) {
  const rows = [["model", result.model], ["clips", `${result.clips} (${result.audio_seconds} s of audio, RTF ${num(result.rtf, 4)})`]];
  const id = result.identification;
  if (id) {
    rows.push(["identification", `${id.speakers} speakers, ${id.enrol_utterances} enrolment / ${id.test_utterances} test clips`],
      ["top-1 / top-5 accuracy", `${pct(id.top1)} / ${pct(id.top5)}`], ["F1 (macro)", pct(id.f1)]);
  }
  const open = result.open_set;
  if (open) {
    rows.push([`open set: ${open.enrolled_speakers} enrolled, ${open.held_out_speakers} held out`,
      `threshold ${num(open.threshold)}: accept-correct ${pct(open.accept_correct)}, unknown-rejected ${pct(open.unknown_rejected)}`]);
  }
  for (const [list, v] of Object.entries(result.verification || {})) {
    rows.push([`${list} (${v.trials} trials)`,
      `EER ${pct(v.eer)}, minDCF(0.01) ${num(v["min_dcf_p0.01"], 4)}, minDCF(0.05) ${num(v["min_dcf_p0.05"], 4)}, threshold at EER ${num(v.threshold_eer)}`]);
  }
  const table = document.createElement("table");
  for (const [name, value] of rows) {
    const tr = table.insertRow();
    const th = document.createElement("th");
    th.textContent = name;
    tr.append(th);
    tr.insertCell().textContent = value;
  }
  return table;
}

async function loadEvaluation() {
  const { result, plot } = await api("GET", "/v1/eval/latest");
  if (!result) return;
  $("eval-figures").replaceChildren(evaluationTable(result));
  if (plot) {
    const png = await fetch("/v1/eval/latest.png", { headers: { Authorization: `Bearer ${sessionStorage.getItem("speakerid-key") || ""}` } });
    $("eval-plot").src = URL.createObjectURL(await png.blob());
    $("eval-plot").hidden = false;
  }
}

// -- wiring ------------------------------------------------------------------------------------------------------
function wire() {
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); login($("key").value.trim()); });
  $("logout").addEventListener("click", () => { sessionStorage.removeItem("speakerid-key"); location.reload(); });
  document.querySelectorAll("nav button[data-screen]").forEach((b) => b.addEventListener("click", () => show(b.dataset.screen)));

  enrollRecorder.meter = $("level");
  let ticker;
  let live = null;
  $("record-start").addEventListener("click", async () => {
    enrollRecorder.onChunk = (data, rate) => { live = live || liveQuality(rate); live.send(data); };
    await enrollRecorder.start();
    $("record-start").disabled = true; $("record-stop").disabled = false;
    ticker = setInterval(() => { $("recording-seconds").textContent = `${enrollRecorder.seconds().toFixed(1)} s`; }, 200);
  });
  $("record-stop").addEventListener("click", async () => {
    clearInterval(ticker);
    enrollRecorder.onChunk = null;
    if (live) { live.end(); live = null; }
    const blob = await enrollRecorder.stop();
    $("record-start").disabled = false; $("record-stop").disabled = true;
    state.clips.push({ blob, name: `recording-${state.clips.length + 1}.wav` });
    await checkClips().catch((e) => report("enroll", e));
  });
  $("enroll-files").addEventListener("change", async (e) => {
    for (const f of e.target.files) state.clips.push({ blob: f, name: f.name });
    await checkClips().catch((err) => report("enroll", err));
  });
  $("enroll-submit").addEventListener("click", () => enroll().catch((e) => report("enroll", e)));

  probeRecorder.meter = $("probe-level");
  $("probe-start").addEventListener("click", async () => {
    await probeRecorder.start();
    $("probe-start").disabled = true; $("probe-stop").disabled = false;
  });
  $("probe-stop").addEventListener("click", async () => {
    state.probe = { blob: await probeRecorder.stop(), name: "recording.wav" };
    $("probe-start").disabled = false; $("probe-stop").disabled = true; $("probe-submit").disabled = false;
  });
  $("probe-file").addEventListener("change", (e) => {
    state.probe = { blob: e.target.files[0], name: e.target.files[0].name };
    $("probe-submit").disabled = false;
  });
  $("probe-submit").addEventListener("click", () => ask().catch((e) => report("identify", e)));

  $("grant-form").addEventListener("submit", (e) => {
    e.preventDefault();
    api("POST", "/v1/access/grants", JSON.stringify({ principal: $("grant-principal").value, resource: $("grant-resource").value }),
      { "Content-Type": "application/json" }).then(loadAccess).catch((err) => report("access", err));
  });
  $("group-form").addEventListener("submit", (e) => {
    e.preventDefault();
    api("PUT", `/v1/access/groups/${encodeURIComponent($("group-name").value)}/members/${encodeURIComponent($("group-member").value)}`)
      .then(loadAccess).catch((err) => report("access", err));
  });
  $("audit-form").addEventListener("submit", (e) => { e.preventDefault(); state.auditOffset = 0; loadAudit().catch((err) => report("access", err)); });
  $("audit-prev").addEventListener("click", () => { state.auditOffset = Math.max(0, state.auditOffset - PAGE); loadAudit(); });
  $("audit-next").addEventListener("click", () => { state.auditOffset += PAGE; loadAudit(); });

  const saved = sessionStorage.getItem("speakerid-key");
  if (saved !== null) login(saved);
}

document.addEventListener("DOMContentLoaded", wire);
