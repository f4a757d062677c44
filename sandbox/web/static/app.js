// The demo's web chat. Vendored, no dependencies. The bot's messages arrive as plain text plus
// Telegram's entities (offsets in UTF-16 code units, which is what JavaScript strings use), and are
// built with DOM calls only: no markup from the server is ever parsed as HTML.
"use strict";

const SAFE_LINK = /^(https?:|mailto:|tel:)/i;
const AUTOLINK = /(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]])|([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})/g;

const ui = {
  state: null,
  selected: { participant: null, staff: null },
  seenBotMessages: {},   // persona key -> bot messages seen while selected
  seenToasts: new Set(),
  phones: {},            // role -> {root, header, chat, input, key}
  pictures: new Map(),   // "<persona>/<message>/<url>" -> its <img>, kept so a re-render never reloads it
  logRows: 0,
};

// ---- formatting: Telegram entities to DOM ----------------------------------------------------

function renderFormatted(text, entities) {
  const fragment = document.createDocumentFragment();
  const sorted = (entities || []).slice().sort((a, b) => a.offset - b.offset || b.length - a.length);
  build(fragment, text, 0, text.length, sorted, true);
  return fragment;
}

function build(parent, text, start, end, entities, linkify) {
  let pos = start;
  let i = 0;
  while (i < entities.length) {
    const entity = entities[i];
    const entityEnd = entity.offset + entity.length;
    const inner = [];
    let j = i + 1;
    while (j < entities.length && entities[j].offset < entityEnd) { inner.push(entities[j]); j++; }
    const from = Math.max(entity.offset, pos);
    const to = Math.min(entityEnd, end);
    if (from > pos) appendText(parent, text.slice(pos, from), linkify);
    if (to > from) {
      const element = elementFor(entity);
      const childLinkify = linkify && !["text_link", "code", "pre", "url", "email"].includes(entity.type);
      build(element, text, from, to, inner, childLinkify);
      parent.append(element);
      pos = to;
    }
    i = j;
  }
  if (pos < end) appendText(parent, text.slice(pos, end), linkify);
}

function elementFor(entity) {
  switch (entity.type) {
    case "bold": return document.createElement("b");
    case "italic": return document.createElement("i");
    case "underline": return document.createElement("u");
    case "strikethrough": return document.createElement("s");
    case "code": return document.createElement("code");
    case "pre": {
      const pre = document.createElement("pre");
      if (entity.language) pre.dataset.language = entity.language;
      return pre;
    }
    case "blockquote":
    case "expandable_blockquote": return document.createElement("blockquote");
    case "spoiler": {
      const span = document.createElement("span");
      span.className = "spoiler";
      span.title = "spoiler: click to reveal";
      span.addEventListener("click", () => span.classList.add("revealed"));
      return span;
    }
    case "text_link": return link(entity.url);
    default: {
      const span = document.createElement("span");
      span.className = "entity-" + String(entity.type).replace(/[^a-z_]/g, "");
      return span;
    }
  }
}

function link(url) {
  if (typeof url === "string" && SAFE_LINK.test(url)) {
    const a = document.createElement("a");
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }
  const span = document.createElement("span");
  span.className = "entity-link";
  return span;
}

function appendText(parent, text, linkify) {
  if (!linkify) { parent.append(text); return; }
  let last = 0;
  for (const match of text.matchAll(AUTOLINK)) {
    if (match.index > last) parent.append(text.slice(last, match.index));
    const a = link(match[1] ? match[1] : "mailto:" + match[2]);
    a.append(match[0]);
    parent.append(a);
    last = match.index + match[0].length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

// ---- times ------------------------------------------------------------------------------------

function fmt(iso, zone, options) {
  if (!iso) return "";
  try {
    return new Intl.DateTimeFormat("en-GB", { timeZone: zone || "UTC", ...options }).format(new Date(iso));
  } catch (e) {
    return new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", ...options }).format(new Date(iso)) + " UTC";
  }
}
const HM = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
const DAY_HM = { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
const SHORT = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
const FULL = { weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
               hourCycle: "h23", timeZoneName: "short" };

// ---- server -----------------------------------------------------------------------------------

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok && response.status !== 409) throw new Error(await response.text());
  return response.json();
}

function connect() {
  const events = new EventSource("/api/events");
  const banner = document.getElementById("connection");
  events.addEventListener("state", (event) => { banner.hidden = true; render(JSON.parse(event.data)); });
  events.addEventListener("open", () => { banner.hidden = true; });
  events.addEventListener("error", () => { banner.hidden = false; });
  fetch("/api/state").then((r) => r.json()).then((state) => { if (!ui.state) render(state); });
}

// ---- rendering --------------------------------------------------------------------------------

function render(state) {
  if (ui.state && state.version < ui.state.version) return;  // an older snapshot arrived late
  ui.state = state;
  for (const role of ["participant", "staff"]) {
    const personas = state.personas.filter((p) => p.role === role);
    if (!personas.length) continue;
    if (!personas.some((p) => p.key === ui.selected[role])) ui.selected[role] = personas[0].key;
    const current = personas.find((p) => p.key === ui.selected[role]);
    ui.seenBotMessages[current.key] = botCount(current);
    renderTabs(role, personas, state.clock.now);
    renderPhone(role, current, state);
  }
  renderClock(state.clock);
  renderLog(state.log);
}

function botCount(persona) { return persona.messages.filter((m) => m.from_bot).length; }

function renderTabs(role, personas, now) {
  const nav = document.getElementById(role + "-tabs");
  nav.replaceChildren();
  for (const persona of personas) {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.className = "tab";
    tab.dataset.persona = persona.key;
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-selected", String(persona.key === ui.selected[role]));
    const name = document.createElement("span");
    name.className = "tab-name";
    name.append(persona.name);
    tab.append(name);
    const unread = botCount(persona) - (ui.seenBotMessages[persona.key] || 0);
    if (unread > 0) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.append(String(unread));
      tab.append(badge);
    }
    const desc = document.createElement("span");
    desc.className = "tab-desc";
    desc.append(persona.description);
    tab.append(desc);
    if (persona.timezone) {
      const time = document.createElement("span");
      time.className = "tab-time";
      time.append("local time " + fmt(now, persona.timezone, DAY_HM) + " (" + persona.timezone + ")");
      tab.append(time);
    }
    tab.addEventListener("click", () => {
      ui.selected[role] = persona.key;
      if (ui.phones[role]) ui.phones[role].input.value = "";
      render(ui.state);
    });
    nav.append(tab);
  }
}

function phoneFor(role) {
  if (ui.phones[role]) return ui.phones[role];
  const root = document.getElementById(role + "-phone");
  const header = document.createElement("div");
  header.className = "phone-header";
  const chat = document.createElement("div");
  chat.className = "chat";
  chat.setAttribute("role", "log");
  chat.setAttribute("aria-live", "polite");
  const form = document.createElement("form");
  form.className = "composer";
  const input = document.createElement("input");
  input.type = "text";
  input.placeholder = "Message";
  input.setAttribute("aria-label", role === "staff" ? "Message as the study team member" : "Message as the participant");
  input.autocomplete = "off";
  const send = document.createElement("button");
  send.type = "submit";
  send.append("Send");
  form.append(input, send);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    await post(`/api/chats/${encodeURIComponent(ui.phones[role].key)}/send`, { text });
  });
  root.append(header, chat, form);
  ui.phones[role] = { root, header, chat, input, key: null, rendered: "" };
  return ui.phones[role];
}

function renderPhone(role, persona, state) {
  const phone = phoneFor(role);
  const switched = phone.key !== persona.key;
  phone.key = persona.key;
  phone.root.dataset.persona = persona.key;

  phone.header.replaceChildren();
  const avatar = document.createElement("div");
  avatar.className = "avatar";
  avatar.append("T");
  const titles = document.createElement("div");
  const title = document.createElement("div");
  title.className = "phone-title";
  title.append(state.bot.name);
  const sub = document.createElement("div");
  sub.className = "phone-sub";
  sub.append("bot · @" + state.bot.username);
  titles.append(title, sub);
  const owner = document.createElement("div");
  owner.className = "phone-owner";
  owner.append(persona.name);
  phone.header.append(avatar, titles, owner);

  const templates = templatesByMessage(state.log);
  const signature = JSON.stringify([persona.messages, persona.toasts, templates[persona.key] || null]);
  if (!switched && signature === phone.rendered) return;
  phone.rendered = signature;
  const chat = phone.chat;
  const nearBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 80;
  const grew = persona.messages.length !== phone.count;
  phone.count = persona.messages.length;
  chat.replaceChildren();

  if (!persona.messages.length) {
    if (persona.start_link) chat.append(inviteCard(persona));
    else {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.append("No messages yet.");
      chat.append(empty);
    }
  }
  for (const message of persona.messages) {
    chat.append(messageElement(persona, message, (templates[persona.key] || {})[message.id]));
  }
  for (const toast of persona.toasts) {
    if (ui.seenToasts.has(toast.id)) continue;
    ui.seenToasts.add(toast.id);
    const note = document.createElement("div");
    note.className = "toast";
    note.setAttribute("role", "status");
    note.append(toast.text);
    chat.append(note);
    setTimeout(() => note.remove(), toast.alert ? 6000 : 2500);
  }
  if (switched || nearBottom || grew) chat.scrollTop = chat.scrollHeight;
}

function inviteCard(persona) {
  const card = document.createElement("div");
  card.className = "invite";
  const heading = document.createElement("div");
  heading.append("The study team gave " + persona.name + " this invite link (a QR code at the consent visit):");
  const url = document.createElement("div");
  url.className = "link";
  url.append(persona.start_link);
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open-invite";
  open.append("Open the invite link");
  open.addEventListener("click", () => post(`/api/chats/${encodeURIComponent(persona.key)}/open-link`, {}));
  card.append(heading, url, open);
  return card;
}

function messageElement(persona, message, templateIds) {
  const wrap = document.createElement("div");
  wrap.className = "msg " + (message.from_bot ? "in" : "out");
  wrap.dataset.messageId = String(message.id);
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  if (message.forwarded) { const m = document.createElement("div"); m.className = "media"; m.append("Forwarded message"); bubble.append(m); }
  if (message.reply_to) { const m = document.createElement("div"); m.className = "media"; m.append("↩ reply to #" + message.reply_to); bubble.append(m); }
  if (message.photo) {
    wrap.classList.add("has-photo");
    bubble.append(picture(persona, message));
  }
  if (message.media && !message.photo) {
    const m = document.createElement("div"); m.className = "media"; m.append(message.media); bubble.append(m);
  }
  if (message.text !== null && message.text !== undefined) {
    const body = document.createElement("span");
    body.className = "text";
    // Only the bot's messages carry formatting; what a person types is shown exactly as typed.
    if (message.from_bot) body.append(renderFormatted(message.text, message.entities));
    else body.append(message.text);
    bubble.append(body);
  }
  if (message.caption) {
    const body = document.createElement("span");
    body.className = "text caption";
    body.append(renderFormatted(message.caption, message.caption_entities));
    bubble.append(body);
  }
  const meta = document.createElement("span");
  meta.className = "meta";
  const parts = [];
  if (message.silent) parts.push("🔕");
  if (message.edits) parts.push("edited");
  parts.push(fmt(message.edit_date || message.date, persona.timezone, HM));
  meta.append(parts.join(" "));
  meta.title = fmt(message.date, persona.timezone, FULL) + (message.silent ? " · sent silently (quiet hours)" : "");
  bubble.append(meta);
  wrap.append(bubble);

  if (message.buttons.length) {
    const keyboard = document.createElement("div");
    keyboard.className = "keyboard";
    for (const row of message.buttons) {
      const line = document.createElement("div");
      line.className = "kb-row";
      for (const button of row) line.append(keyboardButton(persona, message, button));
      keyboard.append(line);
    }
    wrap.append(keyboard);
  }
  if (templateIds && templateIds.length) {
    const tag = document.createElement("div");
    tag.className = "template-tag";
    tag.append(templateIds.join(" → "));
    tag.title = "the approved template(s) this message came from, oldest first";
    wrap.append(tag);
  }
  return wrap;
}

// A photo as the chat shows it: the picture the stand-in stored, at its own proportions (the
// size is reserved before it loads, so the chat stays scrolled to the bottom); opens full size.
function picture(persona, message) {
  const key = persona.key + "/" + message.id + "/" + message.photo.url;
  let link = ui.pictures.get(key);
  if (!link) {
    link = document.createElement("a");
    link.className = "photo";
    link.href = message.photo.url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.title = "open the picture full size";
    const img = document.createElement("img");
    img.src = message.photo.url;
    img.width = message.photo.width;
    img.height = message.photo.height;
    img.alt = "picture sent by " + (message.from_bot ? "the bot" : persona.name);
    img.decoding = "async";
    link.append(img);
    ui.pictures.set(key, link);
  }
  return link;
}

function keyboardButton(persona, message, button) {
  if (button.url !== undefined) {
    const a = link(button.url);
    a.classList.add("kb-button");
    a.append(button.text);
    return a;
  }
  const element = document.createElement("button");
  element.type = "button";
  element.className = "kb-button";
  element.append(button.text);
  element.addEventListener("click", async () => {
    element.classList.add("pending");
    await post(`/api/chats/${encodeURIComponent(persona.key)}/press`, { message_id: message.id, data: button.data });
  });
  return element;
}

function templatesByMessage(log) {
  const result = {};
  for (const row of log) {
    if (!row.to_key || row.message_id === null) continue;
    const chat = (result[row.to_key] ||= {});
    (chat[row.message_id] ||= []).push(row.template + " (" + row.language + ")");
  }
  return result;
}

function renderClock(clock) {
  document.getElementById("clock-now").textContent = fmt(clock.now, clock.zone, FULL);
  document.getElementById("clock-next-event").textContent =
    clock.next_event ? fmt(clock.next_event, clock.zone, FULL) + (clock.next_what ? " — " + clock.next_what : "") : "none";
  document.getElementById("clock-last").textContent = clock.last || "";
}

function renderLog(rows) {
  const body = document.querySelector("#log tbody");
  if (rows.length === ui.logRows && body.children.length === rows.length) return;
  const fresh = rows.length - ui.logRows;
  body.replaceChildren();
  rows.forEach((row, index) => {
    const tr = document.createElement("tr");
    if (!row.approved) tr.className = "draft";
    if (ui.logRows && index >= rows.length - fresh) tr.classList.add("fresh");
    const cells = [
      [fmt(row.time, "UTC", SHORT), "time"],
      [row.to, "to"],
      [row.template + " (" + row.language + ")", "template"],
      [(row.approved ? "✓ " : "DRAFT ") + row.hash.slice(0, 8), "hash"],
      [row.via, "via"],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.className = cls;
      td.append(text);
      tr.append(td);
    }
    tr.title = "sha256 " + row.hash;
    body.append(tr);
  });
  ui.logRows = rows.length;
  const wrap = body.closest(".log-wrap");
  wrap.scrollTop = wrap.scrollHeight;
}

// ---- wiring -----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll(".clock-buttons button")) {
    button.addEventListener("click", async () => {
      const all = document.querySelectorAll(".clock-buttons button");
      all.forEach((b) => { b.disabled = true; });
      document.getElementById("clock-last").textContent = "moving the clock…";
      try {
        const result = await post("/api/clock", { action: button.dataset.action });
        document.getElementById("clock-last").textContent = result.summary;
      } finally {
        all.forEach((b) => { b.disabled = false; });
      }
    });
  }
  const toggle = document.getElementById("show-templates");
  toggle.addEventListener("change", () => document.body.classList.toggle("hide-templates", !toggle.checked));
  connect();
});
