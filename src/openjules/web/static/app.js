// openjules web app: live updates and small conveniences. Every page is complete
// without this script; it only adds what JavaScript can (no inline scripts: CSP).
"use strict";

// A live stream the browser gave up on (signed out, key revoked, the server gone for
// good: EventSource retries by itself otherwise) leaves the page as it was; say so.
function watchLive(source) {
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED) return;
    const note = document.getElementById("live-stopped");
    if (note) note.hidden = false;
  });
  return source;
}

function parseFragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content.firstElementChild;
}

// --- The sessions page: rows appear, change and leave as sessions do. ---------------
function followSessionList(main) {
  const list = document.getElementById("session-list");
  const empty = document.getElementById("no-sessions");
  const insert = main.hasAttribute("data-live-insert");
  const source = watchLive(new EventSource(main.dataset.liveList));
  const refreshEmpty = () => { if (empty) empty.hidden = list.children.length > 0; };
  source.addEventListener("row", (event) => {
    const row = parseFragment(event.data);
    const existing = document.getElementById(row.id);
    if (existing) {
      existing.replaceWith(row);
    } else if (insert) {
      // Newest first: before the first row created earlier than this one.
      const later = Array.from(list.children).find(
        (other) => (other.dataset.createTime || "") < row.dataset.createTime);
      list.insertBefore(row, later || null);
    }
    refreshEmpty();
  });
  source.addEventListener("remove", (event) => {
    const row = document.getElementById("session-" + event.data);
    if (row) row.remove();
    refreshEmpty();
  });
}

// --- A session's page: its timeline, header and changes follow the session. ---------
function followSession(main) {
  const id = main.dataset.session;
  const timeline = document.getElementById("timeline");
  const header = document.getElementById("session-header");
  let changesVersion = "";

  const refreshChanges = () => {
    fetch("/session/" + id + "/changes", { credentials: "same-origin" })
      .then((response) => (response.ok ? response.text() : null))
      .then((html) => {
        const current = document.getElementById("changes");
        if (html && current) {
          const fresh = parseFragment(html);
          current.replaceWith(fresh);
          renderDiffs(fresh);
        }
      })
      .catch(() => {});
  };

  const markQuestion = (state) => {
    timeline.querySelectorAll("li.question").forEach((li) => li.classList.remove("question"));
    timeline.querySelectorAll(".question-label").forEach((label) => label.remove());
    if (state !== "AWAITING_USER_FEEDBACK") return;
    const messages = timeline.querySelectorAll("li.agent-message");
    const last = messages[messages.length - 1];
    if (!last) return;
    last.classList.add("question");
    const label = document.createElement("span");
    label.className = "question-label";
    label.textContent = "Waiting for your answer";
    last.querySelector(".activity-head").insertBefore(label, last.querySelector("time"));
  };

  const activities = watchLive(new EventSource(
    "/session/" + id + "/live/activities?after=" + encodeURIComponent(main.dataset.after)));
  activities.addEventListener("activity", (event) => {
    const item = parseFragment(event.data);
    if (document.getElementById(item.id)) return;  // already shown (a reconnect)
    timeline.appendChild(item);
    const head = header.querySelector(".session-head");
    if (head) markQuestion(head.dataset.state);
    if (item.hasAttribute("data-changes")) refreshChanges();
  });

  const sessionEvents = watchLive(new EventSource("/session/" + id + "/live/session"));
  sessionEvents.addEventListener("session", (event) => {
    // Keep an open confirmation open across an update of the buttons.
    const open = Array.from(header.querySelectorAll("details[open] summary"))
      .map((s) => s.textContent);
    header.innerHTML = event.data;
    header.querySelectorAll("details summary").forEach((s) => {
      if (open.includes(s.textContent)) s.parentElement.open = true;
    });
    const head = header.querySelector(".session-head");
    const state = head.dataset.state;
    document.title = head.querySelector("h1").textContent + " · openjules";
    const note = document.getElementById("working-note");
    if (note) note.hidden = !head.hasAttribute("data-working");
    markQuestion(state);
    const version = state + "/" + head.dataset.outputs;
    if (changesVersion && version !== changesVersion) refreshChanges();
    changesVersion = version;
  });
}

// --- The diff viewer: syntax-highlighted per-file diffs. diff2html (1 MB, highlight.js
// inside) is fetched only by a page that shows a diff, once the page is interactive (a
// deferred script would run before DOMContentLoaded); the plain diff shows until then.
const DIFF_RENDERER = "/static/vendor/diff2html/diff2html-ui.min.js";
let diffRenderer = null;

function renderDiffs(root) {
  if (!root.querySelector("pre[data-diff]")) return;
  if (typeof Diff2HtmlUI === "undefined") {
    if (!diffRenderer) {
      diffRenderer = document.createElement("script");
      diffRenderer.src = DIFF_RENDERER;
      document.head.appendChild(diffRenderer);
    }
    diffRenderer.addEventListener("load", () => renderDiffs(root), { once: true });
    return;
  }
  root.querySelectorAll("pre[data-diff]").forEach((pre) => {
    const target = document.createElement("div");
    target.className = "diff2html-target";
    pre.replaceWith(target);
    const ui = new Diff2HtmlUI(target, pre.textContent, {
      drawFileList: false,
      outputFormat: "line-by-line",
      matching: "lines",
      highlight: true,
      fileContentToggle: false,
      colorScheme: "auto",
    });
    ui.draw();
    ui.highlightCode();
  });
}

// --- The new-session form: search the repositories, show the chosen one's branches. --
function wireNewSessionForm() {
  const sourceSelect = document.getElementById("source");
  const branchSelect = document.getElementById("branch");
  const data = document.getElementById("branches");
  if (!sourceSelect || !branchSelect || !data) return;
  const branches = JSON.parse(data.textContent);
  const autoPr = document.querySelector("input[name=auto_pr]");
  const showBranches = () => {
    const chosen = branches[sourceSelect.value];
    branchSelect.replaceChildren();
    branchSelect.disabled = !chosen;
    if (autoPr) autoPr.disabled = !chosen;
    if (!chosen) return;
    chosen.branches.forEach((name) => {
      const option = new Option(
        name + (name === chosen.default ? " (default)" : ""), name, false,
        name === chosen.default);
      branchSelect.add(option);
    });
  };
  sourceSelect.addEventListener("change", showBranches);
  const search = document.getElementById("source-search");
  if (search) {
    search.addEventListener("input", () => {
      const words = search.value.trim().toLowerCase();
      let firstShown = null;
      Array.from(sourceSelect.options).forEach((option) => {
        const shown = option.value === "" || option.text.toLowerCase().includes(words);
        option.hidden = !shown;
        if (shown && option.value && !firstShown) firstShown = option;
      });
      const current = sourceSelect.selectedOptions[0];
      if (current && current.hidden && firstShown) {
        sourceSelect.value = firstShown.value;
        showBranches();
      }
    });
  }
}

// --- Copy buttons (a secret shown once). ----------------------------------------------
function wireCopyButtons() {
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", () => {
      const target = document.querySelector(button.dataset.copy);
      if (!target) return;
      const text = target.value !== undefined ? target.value : target.textContent;
      const done = () => { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, () => {});
      } else if (target.select) {
        target.select();
        document.execCommand("copy");
        done();
      }
    });
  });
}

document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", () => {
  const main = document.getElementById("main");
  if (main && main.dataset.liveList) followSessionList(main);
  if (main && main.dataset.session) followSession(main);
  renderDiffs(document);
  wireNewSessionForm();
  wireCopyButtons();
});
