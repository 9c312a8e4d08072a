// The asr page: microphone -> AudioWorklet -> WebSocket /ws (f32le at the AudioContext's rate; the server
// resamples), partial and final text back; file upload -> POST /transcribe. No build step, no dependencies.
"use strict";

const LOW_CONFIDENCE = 0.5; // words below this (the min posterior of their characters) are marked
const HEALTH_EVERY_MS = 5000;
const $ = (id) => document.getElementById(id);

const live = {ws: null, ctx: null, media: null, node: null, ready: false, stopping: false, ended: false,
              queue: [], error: null, started: 0, clock: null, eofTimer: null};
let serverUp = null;

// ---------------------------------------------------------------- messages to the user
function showBanner(text, tag = "") {
  $("banner-text").textContent = text;
  $("banner").dataset.kind = tag; // "server": the health check's own message, hidden when the server is back
  $("banner").hidden = false;
}
function hideBanner() { $("banner").hidden = true; }
$("banner-close").addEventListener("click", hideBanner);

function fmtTime(s) {
  const m = Math.floor(s / 60);
  const rest = (s - 60 * m).toFixed(2).padStart(5, "0");
  return `${m}:${rest}`;
}

function wordSpans(words) {
  const frag = document.createDocumentFragment();
  words.forEach((w, i) => {
    const span = document.createElement("span");
    span.className = "word" + (w.confidence < LOW_CONFIDENCE ? " low" : "");
    span.textContent = w.word;
    span.title = `${fmtTime(w.start)}–${fmtTime(w.end)} · confidence ${w.confidence.toFixed(2)}`;
    span.dataset.confidence = w.confidence;
    frag.appendChild(span);
    if (i < words.length - 1) frag.appendChild(document.createTextNode(" "));
  });
  return frag;
}

function segmentItem(seg) {
  const li = document.createElement("li");
  li.className = "final";
  li.dataset.text = seg.text;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${fmtTime(seg.start)} – ${fmtTime(seg.end)}`;
  const text = document.createElement("span");
  text.className = "text";
  text.appendChild(seg.words && seg.words.length ? wordSpans(seg.words) : document.createTextNode(seg.text));
  li.append(time, text);
  return li;
}

// ---------------------------------------------------------------- server health
async function checkHealth() {
  try {
    const r = await fetch("/health", {cache: "no-store"});
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const h = await r.json();
    $("server-status").className = "pill pill-ok";
    $("server-status-text").textContent = `Server ready · ${h.streams}/${h.max_streams} streams`;
    $("decoder").textContent = `Decoder: ${h.decoder}`;
    if (serverUp === false && $("banner").dataset.kind === "server") hideBanner();
    serverUp = true;
  } catch (e) {
    $("server-status").className = "pill pill-bad";
    $("server-status-text").textContent = "Server unreachable";
    if (serverUp !== false) {
      showBanner("The server is not reachable. Is `asr serve` still running? Retrying every few seconds…", "server");
    }
    serverUp = false;
  }
}

// ---------------------------------------------------------------- microphone
function setMicUi(state, note) {
  const on = state === "on" || state === "starting";
  $("mic").classList.toggle("on", on);
  $("mic").classList.toggle("busy", state === "starting" || state === "stopping");
  $("mic").setAttribute("aria-pressed", String(on));
  $("mic-label").textContent = on ? "Stop" : state === "stopping" ? "Finishing…" : "Start";
  $("mic").disabled = state === "stopping";
  $("mic-state").textContent = note;
}

function micErrorText(e) {
  switch (e && e.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was refused. Allow the microphone for this page (the icon in the address bar) " +
             "and press Start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one and press Start again.";
    case "NotReadableError":
      return "The microphone could not be opened: another program may be using it.";
    default:
      return `The microphone could not be started (${e && e.message ? e.message : e}).`;
  }
}

async function startMic() {
  hideBanner();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
    showBanner("This browser cannot capture audio on this page: open it as http://localhost:PORT/ or over https.");
    return;
  }
  setMicUi("starting", "Asking for the microphone…");
  try {
    live.media = await navigator.mediaDevices.getUserMedia({
      audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  } catch (e) {
    setMicUi("off", "Microphone off");
    showBanner(micErrorText(e));
    return;
  }
  Object.assign(live, {ready: false, stopping: false, ended: false, queue: [], error: null});
  live.ctx = new AudioContext();
  await live.ctx.audioWorklet.addModule("/static/worklet.js");
  const source = live.ctx.createMediaStreamSource(live.media);
  live.node = new AudioWorkletNode(live.ctx, "pcm-capture", {processorOptions: {blockMs: 50}});
  const mute = live.ctx.createGain(); // the node must reach the destination to be run; silence it
  mute.gain.value = 0;
  source.connect(live.node).connect(mute).connect(live.ctx.destination);
  live.node.port.onmessage = (e) => onBlock(e.data);

  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  live.ws = ws;
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    ws.send(JSON.stringify({type: "config", sample_rate: live.ctx.sampleRate, format: "f32le"}));
    for (const block of live.queue) ws.send(block);
    live.queue = [];
  };
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onclose = (e) => onClose(e);
  live.started = performance.now();
  live.clock = setInterval(() => {
    const s = (performance.now() - live.started) / 1000;
    $("mic-clock").textContent = `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  }, 250);
  $("live-empty").hidden = true;
  setMicUi("on", `Listening · ${(live.ctx.sampleRate / 1000).toFixed(1)} kHz`);
}

function onBlock(data) {
  $("meter-bar").style.width = `${Math.min(100, Math.sqrt(Math.min(1, data.rms * 4)) * 100).toFixed(0)}%`;
  const ws = live.ws;
  if (!ws || live.ended) return;
  if (ws.readyState === WebSocket.CONNECTING) live.queue.push(data.samples.buffer);
  else if (ws.readyState === WebSocket.OPEN) ws.send(data.samples.buffer);
}

function stopCapture() {
  if (live.media) live.media.getTracks().forEach((t) => t.stop());
  if (live.ctx) live.ctx.close();
  live.media = live.ctx = live.node = null;
  clearInterval(live.clock);
  $("meter-bar").style.width = "0%";
}

function stopMic() {
  // End of stream: the worklet's last partial block, then eof; the server answers with the last final.
  live.stopping = true;
  setMicUi("stopping", "Finishing the last sentence…");
  if (live.node) live.node.port.postMessage("flush");
  live.eofTimer = setTimeout(() => {
    if (live.media) live.media.getTracks().forEach((t) => t.stop());
    if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({type: "eof"}));
    else finishUi();
  }, 120);
}

function finishUi() {
  stopCapture();
  $("partial").textContent = "";
  setMicUi("off", "Microphone off");
}

function onMessage(m) {
  if (m.type === "ready") {
    live.ready = true;
  } else if (m.type === "partial") {
    $("partial").textContent = m.text;
  } else if (m.type === "final") {
    $("partial").textContent = "";
    $("finals").appendChild(segmentItem(m));
    $("finals").lastChild.scrollIntoView({block: "nearest"});
  } else if (m.type === "error") {
    live.error = m;
    showBanner(`The server ended the stream: ${m.message}`);
  } else if (m.type === "end") {
    live.ended = true;
  }
}

function onClose(e) {
  const expected = live.ended || (live.stopping && e.code === 1000);
  live.ws = null;
  if (!expected && !live.error) {
    showBanner(e.code === 1006
      ? "Lost the connection to the server (it stopped or the network went down). Press Start to try again."
      : `The server closed the stream (code ${e.code}${e.reason ? ": " + e.reason : ""}).`);
  }
  finishUi();
}

$("mic").addEventListener("click", () => {
  if (live.media && !live.stopping) stopMic();
  else if (!live.media) startMic().catch((e) => { stopCapture(); setMicUi("off", "Microphone off"); showBanner(micErrorText(e)); });
});

// ---------------------------------------------------------------- file upload
async function upload(file) {
  hideBanner();
  $("upload-result").hidden = false;
  $("upload-name").textContent = file.name;
  $("upload-meta").textContent = "Transcribing…";
  $("upload-text").textContent = "";
  $("upload-segments").replaceChildren();
  $("drop").classList.add("busy");
  const body = new FormData();
  body.append("file", file, file.name);
  let response;
  try {
    response = await fetch("/transcribe", {method: "POST", body});
  } catch (e) {
    $("upload-meta").textContent = "Failed";
    showBanner("Could not reach the server to transcribe the file. Is `asr serve` still running?");
    return;
  } finally {
    $("drop").classList.remove("busy");
  }
  let result;
  try {
    result = await response.json();
  } catch (e) {
    result = {error: {message: `HTTP ${response.status}`}};
  }
  if (!response.ok) {
    $("upload-meta").textContent = "Failed";
    showBanner(`The file could not be transcribed: ${result.error ? result.error.message : response.status}`);
    return;
  }
  const duration = result.segments.length ? result.segments[result.segments.length - 1].end : 0;
  $("upload-meta").textContent = `${result.words.length} words · ${fmtTime(duration)}`;
  $("upload-text").replaceChildren(result.words.length ? wordSpans(result.words) : document.createTextNode("(no speech recognized)"));
  $("upload-text").dataset.text = result.text;
  for (const seg of result.segments) $("upload-segments").appendChild(segmentItem(seg));
}

$("file").addEventListener("change", (e) => {
  if (e.target.files.length) upload(e.target.files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
});

checkHealth();
setInterval(checkHealth, HEALTH_EVERY_MS);
