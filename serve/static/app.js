// The web page of `nmt serve`: talks to the server's own API, nothing loaded from anywhere else.
// It uses the LibreTranslate-compatible routes: /health (is a key needed?), /languages, /translate, and for files
// /frontend/settings (which formats), /translate_file and /download_file.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "nmt-api-key";
const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  languages: [], // [{code, name, targets}]
  busy: false,
};

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function needKey(rejected) {
  $("key-box").hidden = false;
  $("api-key").focus();
  showError(rejected ? "The server did not accept this API key: enter a valid one." : "This server needs an API key: enter it above.");
  $("server-line").textContent = "an API key is required";
}

async function call(method, path, body) {
  const headers = {};
  if (state.key) headers["X-API-Key"] = state.key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  return { response, data };
}

function detailOf(data) {
  if (data && typeof data === "object") return String(data.error || data.detail || "");
  return "";
}

// A readable sentence for an error answer (the server's own detail where it has one).
function errorMessage(response, data) {
  const detail = detailOf(data);
  switch (response.status) {
    case 400:
    case 422:
      return "The server could not translate this: " + (detail || "invalid request") + ".";
    case 401:
    case 403:
      return "This server needs a valid API key.";
    case 413:
      return "The text (or file) is too long for this server. Send a shorter one or split it.";
    case 429: {
      const wait = response.headers.get("Retry-After");
      return "Too many requests for this API key" + (wait ? ": try again in " + wait + " s." : ". Try again later.");
    }
    case 503:
      return "The server is not ready or too busy. Try again in a moment.";
    case 504:
      return "The server is busy and gave no answer within its time limit. Try again, or send a shorter text.";
    default:
      return "The server answered " + response.status + (detail ? ": " + detail : "") + ".";
  }
}

function option(value, label) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  return o;
}

// A language's name: the server's, else the browser's own (Intl.DisplayNames, built in), else its code.
function displayName(code) {
  try {
    return new Intl.DisplayNames([navigator.language || "en"], { type: "language" }).of(code) || code;
  } catch (e) {
    return code;
  }
}

function nameOf(code) {
  const lang = state.languages.find((l) => l.code === code);
  return lang && lang.name && lang.name !== code ? lang.name : displayName(code);
}

function fillSources() {
  const source = $("source");
  const previous = source.value;
  source.replaceChildren();
  const sources = state.languages.filter((l) => l.targets.some((t) => t !== l.code)); // into itself is no choice
  if (sources.length > 1) source.append(option("auto", "Detect language"));
  for (const l of sources) source.append(option(l.code, nameOf(l.code)));
  if ([...source.options].some((o) => o.value === previous)) source.value = previous;
  fillTargets();
}

function fillTargets() {
  const target = $("target");
  const previous = target.value;
  const source = $("source").value;
  let codes;
  if (source === "auto") codes = [...new Set(state.languages.flatMap((l) => l.targets))];
  else codes = (state.languages.find((l) => l.code === source) || { targets: [] }).targets.filter((c) => c !== source);
  target.replaceChildren(...codes.map((c) => option(c, nameOf(c))));
  if (codes.includes(previous)) target.value = previous;
  updateSwap();
}

function updateSwap() {
  const source = $("source").value;
  const target = $("target").value;
  const reverse = state.languages.find((l) => l.code === target);
  $("swap").disabled = !(source && source !== "auto" && reverse && reverse.targets.includes(source));
}

async function loadLanguages() {
  showError("");
  try {
    // /health needs the key when the server has one: 401 without it, 403 (or 401) for a wrong one
    const health = await call("GET", "/health");
    if (health.response.status === 401 || health.response.status === 403) return needKey(Boolean(state.key));
    const { response, data } = await call("GET", "/languages");
    if (!response.ok || !Array.isArray(data)) return showError(errorMessage(response, data));
    state.languages = data.map((l) => ({ code: l.code, name: l.name || l.code, targets: l.targets || [] }));
  } catch (e) {
    return showError("Cannot reach the server. Is nmt serve still running?");
  }
  $("key-box").hidden = !state.key;
  loadFileFormats();
  const pairs = state.languages.flatMap((l) => l.targets.filter((t) => t !== l.code).map((t) => l.code + "→" + t));
  $("server-line").textContent = "pairs served: " + pairs.join(", ");
  fillSources();
}

async function translateText(text, alternatives) {
  const body = { q: text, source: $("source").value, target: $("target").value, format: "text" };
  if (alternatives > 0) body.alternatives = alternatives;
  if (state.key) body.api_key = state.key;
  const { response, data } = await call("POST", "/translate", body);
  if (!response.ok) return { error: errorMessage(response, data), status: response.status };
  const result = { text: data.translatedText, alternatives: data.alternatives || [] };
  if (data.detectedLanguage) {
    const d = data.detectedLanguage;
    result.detected = "detected: " + nameOf(d.language) + (d.confidence !== undefined ? " (" + Math.round(d.confidence) + "%)" : "");
  }
  return result;
}

async function translate() {
  const text = $("text").value;
  if (state.busy) return;
  if (text.trim() === "") return showError("Type or paste a text to translate first.");
  if (!$("target").value) return showError("This server has no language pair to translate with.");
  state.busy = true;
  $("translate").disabled = true;
  $("translate").textContent = "Translating…";
  showError("");
  try {
    const alternatives = Number($("alternatives").value);
    const result = await translateText(text, alternatives);
    if (result.error) {
      const keyProblem = result.status === 401 || result.status === 403 || (result.status === 400 && /API key/.test(result.error));
      if (keyProblem) return needKey(Boolean(state.key));
      return showError(result.error);
    }
    $("result").textContent = result.text;
    $("detected").textContent = result.detected || "";
    $("copy").disabled = result.text === "";
    const list = $("alternatives-list");
    list.replaceChildren(
      ...result.alternatives.map((a) => {
        const li = document.createElement("li");
        li.textContent = a;
        return li;
      }),
    );
    $("alternatives-box").hidden = result.alternatives.length === 0;
  } catch (e) {
    showError("Cannot reach the server. Is nmt serve still running?");
  } finally {
    state.busy = false;
    $("translate").disabled = false;
    $("translate").textContent = "Translate";
  }
}

// File translation, when the server offers it (GET /frontend/settings: filesTranslation, supportedFilesFormat).
async function loadFileFormats() {
  try {
    const { response, data } = await call("GET", "/frontend/settings");
    const formats = response.ok && data && data.filesTranslation ? data.supportedFilesFormat || [] : [];
    $("file").accept = formats.join(",");
    $("file-formats").textContent = formats.length ? "Formats: " + formats.join(" ") : "";
    $("files-box").hidden = formats.length === 0;
  } catch (e) {
    $("files-box").hidden = true;
  }
}

async function translateFile() {
  const file = $("file").files[0];
  if (state.busy) return;
  if (!file) return showError("Choose a file to translate first.");
  if (!$("target").value) return showError("This server has no language pair to translate with.");
  state.busy = true;
  $("translate-file").disabled = true;
  $("translate-file").textContent = "Translating…";
  $("file-link").hidden = true;
  showError("");
  try {
    const form = new FormData();
    form.append("file", file);
    form.append("source", $("source").value);
    form.append("target", $("target").value);
    if (state.key) form.append("api_key", state.key);
    const response = await fetch("/translate_file", { method: "POST", body: form });
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const message = errorMessage(response, data);
      if (response.status === 403 || (response.status === 400 && /API key/.test(message))) return needKey(Boolean(state.key));
      return showError(message);
    }
    const link = $("file-link");
    link.href = data.translatedFileUrl;
    link.download = file.name;
    link.textContent = "Download " + file.name + " (" + nameOf($("target").value) + ")";
    link.hidden = false;
  } catch (e) {
    showError("Cannot reach the server. Is nmt serve still running?");
  } finally {
    state.busy = false;
    $("translate-file").disabled = false;
    $("translate-file").textContent = "Translate file";
  }
}

async function copyResult() {
  const text = $("result").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    // no clipboard API (a page served over plain HTTP from another host): copy through a selection
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("copy").textContent = "Copied";
  setTimeout(() => ($("copy").textContent = "Copy"), 1500);
}

function swap() {
  const source = $("source").value;
  const target = $("target").value;
  $("source").value = target;
  fillTargets();
  $("target").value = source;
  updateSwap();
  const translated = $("result").textContent;
  if (translated) {
    $("text").value = translated;
    $("result").textContent = "";
    $("alternatives-box").hidden = true;
    countCharacters();
  }
}

function countCharacters() {
  const n = [...$("text").value].length;
  $("count").textContent = n + (n === 1 ? " character" : " characters");
}

document.addEventListener("DOMContentLoaded", () => {
  $("translate").addEventListener("click", translate);
  $("copy").addEventListener("click", copyResult);
  $("translate-file").addEventListener("click", translateFile);
  $("swap").addEventListener("click", swap);
  $("source").addEventListener("change", fillTargets);
  $("target").addEventListener("change", updateSwap);
  $("text").addEventListener("input", countCharacters);
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) translate();
  });
  $("key-box").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("api-key").value.trim();
    sessionStorage.setItem(KEY_STORAGE, state.key);
    loadLanguages();
  });
  $("api-key").value = state.key;
  loadLanguages();
});
