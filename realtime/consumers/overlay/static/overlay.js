"use strict";
// The overlay page: renders the snapshot served in the page, then follows /events (server-sent events).
// Query: ?stream=ID (one stream), ?transparent=1 (for OBS), ?minutes=N (timeline span), ?lines=N.
(() => {
  const query = new URLSearchParams(location.search);
  const onlyStream = query.get("stream");
  const timelineS = 60 * (Number(query.get("minutes")) || 5);
  const maxLines = Number(query.get("lines")) || 6;
  if (query.get("transparent") === "1") document.documentElement.classList.add("transparent");

  const COLOURS = {
    neutral: "#b0bec5", joy: "#ffd54f", surprise: "#ffb74d", anger: "#ef5350",
    sadness: "#64b5f6", disgust: "#81c784", fear: "#ba68c8",
  };
  const colour = (label) => COLOURS[label] ||
    `hsl(${[...label].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 0)} 60% 65%)`;

  let streams = JSON.parse(document.getElementById("snapshot").textContent || "{}").streams || {};
  const root = document.getElementById("streams");

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function tag(label, cls) {
    const node = el("span", cls, label);
    node.style.background = colour(label);
    return node;
  }

  function confidence(u) {
    return (u.scores && u.scores[u.emotion]) || 0;
  }

  function renderStream(id, s) {
    const box = el("section", "stream" + (s.available === "offline" ? " offline" : ""));
    box.dataset.stream = id;
    box.append(el("h2", null, id));
    const current = new Map();  // speaker -> latest utterance, in order of first appearance
    for (const u of s.utterances) current.set(u.speaker ?? "", u);
    for (const [who, u] of current) {
      const row = el("div", "speaker");
      row.append(el("span", "who", who || "current"), tag(u.emotion, "label"));
      const bar = el("div", "bar"), fill = el("div");
      fill.style.width = `${Math.round(100 * confidence(u))}%`;
      fill.style.background = colour(u.emotion);
      bar.append(fill);
      row.append(bar);
      box.append(row);
    }
    const lines = el("ul", "lines");
    for (const u of s.utterances.slice(-maxLines)) {
      const line = el("li", "line");
      line.append(tag(u.emotion, "emotion"));
      if (u.speaker) line.append(el("span", "who", `${u.speaker}:`));
      line.append(el("span", "text", u.text));
      lines.append(line);
    }
    if (s.interim) {
      const line = el("li", "line interim");
      if (s.interim.emotion) line.append(tag(s.interim.emotion, "emotion"));
      line.append(el("span", "text", `${s.interim.text}…`));
      lines.append(line);
    }
    box.append(lines);
    const timeline = el("div", "timeline");
    const end = s.utterances.length ? s.utterances[s.utterances.length - 1].end_s : 0;
    for (const u of s.utterances) {
      if (u.end_s < end - timelineS) continue;
      const block = el("div");
      block.style.left = `${100 * (1 - (end - u.start_s) / timelineS)}%`;
      block.style.width = `${100 * (u.end_s - u.start_s) / timelineS}%`;
      block.style.background = colour(u.emotion);
      block.style.opacity = 0.4 + 0.6 * confidence(u);
      block.title = `${u.emotion}: ${u.text}`;
      timeline.append(block);
    }
    box.append(timeline);
    return box;
  }

  function render() {
    const ids = Object.keys(streams).filter((id) => !onlyStream || id === onlyStream).sort();
    root.replaceChildren(...ids.map((id) => renderStream(id, streams[id])));
    if (!ids.length) root.append(el("p", "empty", "waiting for results…"));
  }

  function stream(id) {
    return (streams[id] ??= { available: null, utterances: [], interim: null });
  }

  function on(kind, apply) {
    events.addEventListener(kind, (e) => { apply(JSON.parse(e.data)); render(); });
  }

  const events = new EventSource("events");
  on("snapshot", (data) => { streams = data.streams; });
  on("available", (d) => { stream(d.stream_id).available = d.state; });
  on("interim", (d) => { stream(d.stream_id).interim = d; });
  on("utterance", (d) => {
    const s = stream(d.stream_id);
    // Later voices can move earlier lines to another speaker: the server sends each correction once.
    const revised = new Map((d.speaker_revisions || []).map((r) => [r.utterance_id, r.speaker]));
    for (const u of s.utterances) if (revised.has(u.utterance_id)) u.speaker = revised.get(u.utterance_id);
    s.utterances.push(d);
    if (s.utterances.length > 500) s.utterances.shift();
    if (s.interim && (s.interim.utterance_id ?? 0) <= d.utterance_id) s.interim = null;
  });
  render();
})();
