// CardioLive page: capture frames and audio, stream them with capture times, draw BPM.
"use strict";
const video = document.getElementById("video");
const bpmEl = document.getElementById("bpm");
const statusEl = document.getElementById("status");
const metaEl = document.getElementById("meta");
const chart = document.getElementById("chart");
const params = new URLSearchParams(location.search);
const FPS = Number(params.get("fps") || 30);
const MAX_WIDTH = 320;  // frames are downscaled before sending: the face is all we need
let ws = null, timer = null, audioCtx = null, audioNode = null, stream = null;
let clock = () => performance.now() / 1000;  // capture-time clock shared by both tracks
let points = [];  // [time_s, bpm]
let busy = false;
window.cardio = { updates: 0, lastBpm: null, lastStatus: "idle", sent: 0 };

function header(obj) {
  const json = new TextEncoder().encode(JSON.stringify(obj));
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, json.length, true);
  return [head, json];
}

function send(obj, payload) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(new Blob([...header(obj), payload]));
  window.cardio.sent += 1;
}

function connect() {
  return new Promise((resolve, reject) => {
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onopen = () => resolve();
    ws.onerror = (e) => reject(e);
    ws.onclose = (e) => { statusEl.textContent = "disconnected (" + e.code + ")"; };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "hello") { metaEl.textContent = "session " + msg.session + " · " + msg.method; return; }
      if (msg.type === "update") {
        window.cardio.updates += 1;
        window.cardio.lastStatus = msg.status;
        if (msg.bpm !== null) {
          window.cardio.lastBpm = msg.bpm;
          window.cardio.lastTime = msg.time_s;
          bpmEl.textContent = msg.bpm.toFixed(0);
          points.push([msg.time_s, msg.bpm]);
          drawChart();
        } else {
          bpmEl.textContent = "--";
        }
        statusEl.textContent = msg.status + (msg.status === "ok" ? " · confidence " + msg.confidence.toFixed(2) : " · " + msg.detail);
        metaEl.textContent = msg.method + " · audio " + msg.audio;
      } else if (msg.type === "refused") {
        statusEl.textContent = "refused: " + msg.status + " · " + msg.detail;
      }
    };
  });
}

function drawChart() {
  const g = chart.getContext("2d");
  g.clearRect(0, 0, chart.width, chart.height);
  if (points.length === 0) return;
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 30);
  const lo = 40, hi = 180;
  g.strokeStyle = "#eee"; g.fillStyle = "#999"; g.font = "11px sans-serif";
  for (let b = 60; b <= 160; b += 20) {
    const y = chart.height - (b - lo) / (hi - lo) * chart.height;
    g.beginPath(); g.moveTo(0, y); g.lineTo(chart.width, y); g.stroke(); g.fillText(b, 2, y - 2);
  }
  g.strokeStyle = "#c0392b"; g.lineWidth = 2; g.beginPath();
  points.forEach(([t, b], i) => {
    const x = (t - t0) / (t1 - t0) * chart.width;
    const y = chart.height - (b - lo) / (hi - lo) * chart.height;
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

const canvas = document.createElement("canvas");
function captureFrame() {
  if (busy || video.readyState < 2 || video.paused || video.ended) return;
  const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const t = clock();
  busy = true;
  canvas.toBlob((blob) => { busy = false; if (blob) send({ type: "frame", t: t }, blob); },
                "image/jpeg", 0.95);
}

function startAudio(source) {
  try {
    audioCtx = new AudioContext();
    const input = source instanceof MediaStream ? audioCtx.createMediaStreamSource(source)
                                                : audioCtx.createMediaElementSource(source);
    audioNode = audioCtx.createScriptProcessor(4096, 1, 1);
    audioNode.onaudioprocess = (e) => {
      const samples = new Float32Array(e.inputBuffer.getChannelData(0));
      const t = clock() - samples.length / audioCtx.sampleRate;  // first sample's time
      send({ type: "audio", t: t, rate: audioCtx.sampleRate }, samples.buffer);
      e.outputBuffer.getChannelData(0).fill(0);  // do not play the sound back
    };
    input.connect(audioNode); audioNode.connect(audioCtx.destination);
    audioCtx.resume();
  } catch (err) {
    metaEl.textContent = "no audio: " + err;
  }
}

async function start(setup) {
  stop();
  points = []; drawChart();
  await connect();
  await setup();
  startAudio(stream || video);
  if ("requestVideoFrameCallback" in video) {
    const onFrame = () => { captureFrame(); if (timer) video.requestVideoFrameCallback(onFrame); };
    timer = true; video.requestVideoFrameCallback(onFrame);
  } else {
    timer = setInterval(captureFrame, 1000 / FPS);
  }
  document.getElementById("stop").disabled = false;
  statusEl.textContent = "streaming";
}

function stop() {
  if (timer && timer !== true) clearInterval(timer);
  timer = null;
  if (audioCtx) { audioCtx.close(); audioCtx = null; }
  if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  if (ws) { ws.close(); ws = null; }
  video.pause();
  document.getElementById("stop").disabled = true;
}

async function playUrl(url) {
  await start(async () => {
    video.srcObject = null; video.src = url; video.muted = false; video.loop = false;
    clock = () => video.currentTime;  // media time: frames and audio share it
    await video.play();
  });
}

document.getElementById("camera").onclick = () => start(async () => {
  stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  video.srcObject = stream; video.muted = true;
  clock = () => performance.now() / 1000;
  await video.play();
});
document.getElementById("file").onchange = (e) => {
  const file = e.target.files[0];
  if (file) playUrl(URL.createObjectURL(file));
};
document.getElementById("stop").onclick = stop;
if (params.get("src")) playUrl(params.get("src")).catch((err) => { statusEl.textContent = "cannot play: " + err; });
