// The page of `dlcli serve`: pick a model, draw or drop an image (or fill in a row), and see
// the top classes as bars. Every prediction goes to the upload route, so the page sees what
// `dlcli predict --json` prints for the same image.
"use strict";

const state = { models: [], model: null, pending: null, busy: false };
const $ = (id) => document.getElementById(id);

async function start() {
  const response = await fetch("models");
  state.models = (await response.json()).models;
  for (const model of state.models) {
    const option = document.createElement("option");
    option.value = option.textContent = model.name;
    $("model").append(option);
  }
  $("model").addEventListener("change", () => choose($("model").value));
  setUpCanvas();
  if (state.models.length) choose(state.models[0].name);
}

function choose(name) {
  state.model = state.models.find((model) => model.name === name);
  $("runtime").textContent = `${state.model.task}, ${state.model.runtime}`;
  $("image-input").hidden = state.model.kind !== "image";
  $("table-input").hidden = state.model.kind !== "table";
  $("bars").replaceChildren();
  $("label").textContent = "";
  $("error").textContent = "";
  if (state.model.kind === "table") buildForm(state.model.columns);
  if (state.model.kind === "image") clearCanvas();
}

// ---- the canvas: pointer events draw strokes; each stroke sends the drawing (throttled)
function setUpCanvas() {
  const canvas = $("canvas");
  const context = canvas.getContext("2d");
  let drawing = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width,
            (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    context.beginPath();
    context.moveTo(...point(event));
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    context.lineTo(...point(event));
    context.stroke();
    schedule();
  });
  const stop = () => { if (drawing) { drawing = false; schedule(); } };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("clear").addEventListener("click", clearCanvas);
  $("file").addEventListener("change", () => { if ($("file").files[0]) send([$("file").files[0]]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) send([event.dataTransfer.files[0]]);
  });
}

function clearCanvas() {
  const canvas = $("canvas");
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.strokeStyle = "#000";
  context.lineWidth = canvas.width / 14;
  context.lineCap = context.lineJoin = "round";
  $("bars").replaceChildren();
  $("label").textContent = "";
}

// One request at a time; the newest drawing is sent when the last answer is in.
function schedule() {
  state.pending = true;
  if (!state.busy) flush();
}

async function flush() {
  if (!state.pending) return;
  state.pending = false;
  state.busy = true;
  const blob = await new Promise((resolve) => $("canvas").toBlob(resolve, "image/png"));
  await send([new File([blob], "drawing.png", { type: "image/png" })]);
  state.busy = false;
  flush();
}

// ---- a model of rows: a field per column, sent as a one-row CSV file
function buildForm(columns) {
  const form = $("row");
  form.replaceChildren();
  for (const column of columns) {
    const label = document.createElement("label");
    label.textContent = column;
    const input = document.createElement("input");
    input.type = "number";
    input.step = "any";
    input.value = "0";
    input.name = column;
    input.addEventListener("input", sendRow);
    label.append(input);
    form.append(label);
  }
  sendRow();
}

function sendRow() {
  const inputs = [...$("row").querySelectorAll("input")];
  const csv = inputs.map((input) => input.name).join(",") + "\n" +
    inputs.map((input) => input.value || "0").join(",") + "\n";
  send([new File([csv], "form.csv", { type: "text/csv" })]);
}

async function send(files) {
  const body = new FormData();
  for (const file of files) body.append("file", file, file.name);
  const classes = (state.model.classes || []).length || 10;
  const url = `v1/models/${encodeURIComponent(state.model.name)}/classify-files?top_k=${Math.min(classes, 10)}`;
  try {
    const response = await fetch(url, { method: "POST", body });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    if (answer.errors.length) throw new Error(answer.errors[0]);
    show(answer.predictions[0]);
  } catch (error) {
    $("error").textContent = String(error.message || error);
  }
}

function show(prediction) {
  $("error").textContent = "";
  const bars = $("bars");
  bars.replaceChildren();
  if (prediction.value) {
    $("label").textContent = prediction.value.map((v) => v.toFixed(3)).join(", ");
    return;
  }
  $("label").textContent = prediction.top_k[0].label;
  for (const { label, probability } of prediction.top_k) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = label;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * probability).toFixed(1)}%`;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * probability).toFixed(1)}%`;
    item.append(name, bar, value);
    bars.append(item);
  }
}

start();
