// cospeech serve: upload, then play the job's fragmented mp4 from a WebSocket through
// Media Source Extensions while it is generated; the status line polls the job API.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 500;
let recording = null; // a Blob from the microphone, used instead of the audio file
let recorder = null;

function say(text, state) {
  const line = $("status");
  line.textContent = text;
  if (state) line.dataset.state = state;
}

function describe(job) {
  if (job.status === "queued") return `queued: position ${job.position} in line`;
  if (job.status === "running") {
    const pct = Math.round(100 * job.progress);
    const speed = job.fps ? `, ${job.fps.toFixed(1)} frames/s` : "";
    const of = job.total_frames ? ` (${job.frames}/${job.total_frames} frames)` : "";
    return `generating: ${pct} %${of}${speed}`;
  }
  if (job.status === "done") return `done: ${job.total_frames} frames at ${job.fps.toFixed(1)} frames/s`;
  return `failed: ${job.error}`;
}

async function toggleRecording() {
  if (recorder) { recorder.stop(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    say(`the microphone is not available (${err.message})`, "failed");
    return;
  }
  const parts = [];
  const started = performance.now();
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => parts.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    recording = new Blob(parts, { type: recorder.mimeType });
    recorder = null;
    $("record").textContent = "Record";
    $("recorded").textContent = `recorded ${((performance.now() - started) / 1000).toFixed(1)} s`;
    $("audio").value = "";
  };
  recorder.start();
  $("record").textContent = "Stop";
  $("recorded").textContent = "recording...";
}

async function start() {
  const image = $("image").files[0];
  const audio = recording || $("audio").files[0];
  if (!image || !audio) { say("Choose a photo and a speech file first.", "idle"); return; }
  const body = new FormData();
  body.append("image", image, "image");
  body.append("audio", audio, "audio");
  $("start").disabled = true;
  $("download").hidden = true;
  say("uploading...", "uploading");
  try {
    const answer = await fetch("/api/jobs", { method: "POST", body });
    const reply = await answer.json();
    if (!answer.ok) { say(`refused: ${reply.error}`, "failed"); return; }
    await watch(reply.id);
  } catch (err) {
    say(`the server cannot be reached (${err.message})`, "failed");
  } finally {
    $("start").disabled = false;
  }
}

// Plays job `id` live; resolves when the job has ended.
function watch(id) {
  const video = $("live");
  const media = new MediaSource();
  const pending = [];
  let buffer = null;
  let streamEnded = false;
  video.src = URL.createObjectURL(media);
  $("status").dataset.job = id;

  const pump = () => {
    if (!buffer || buffer.updating || media.readyState !== "open") return;
    if (pending.length) { buffer.appendBuffer(pending.shift()); return; }
    if (streamEnded) media.endOfStream();
  };
  const openBuffer = (mime) => {
    if (buffer || media.readyState !== "open") return;
    buffer = media.addSourceBuffer(mime);
    buffer.addEventListener("updateend", () => {
      if (video.paused && video.buffered.length) video.play().catch(() => {});
      pump();
    });
    pump();
  };
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/jobs/${id}/stream`);
  socket.binaryType = "arraybuffer";
  socket.onmessage = (e) => { pending.push(e.data); pump(); };
  socket.onclose = () => { streamEnded = true; pump(); };

  return new Promise((resolve) => {
    const poll = async () => {
      let job;
      try {
        job = await (await fetch(`/api/jobs/${id}`)).json();
      } catch (err) {
        setTimeout(poll, POLL_MS);
        return;
      }
      if (job.error && !job.status) { say(job.error, "failed"); resolve(); return; }
      say(describe(job), job.status);
      if (job.mime) {
        if (media.readyState === "open") openBuffer(job.mime);
        else media.addEventListener("sourceopen", () => openBuffer(job.mime), { once: true });
      }
      if (job.status === "done") {
        const link = $("download");
        link.href = `/api/jobs/${id}/video`;
        link.hidden = false;
      }
      if (job.status === "done" || job.status === "failed") { resolve(); return; }
      setTimeout(poll, POLL_MS);
    };
    poll();
  });
}

$("start").addEventListener("click", start);
$("record").addEventListener("click", toggleRecording);
if (!window.MediaSource) say("This browser has no Media Source Extensions: the video can only be downloaded when done.", "idle");
