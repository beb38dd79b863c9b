/* spacemind report: browse the questions of a run (and a compared run), page by page.
 *
 * Everything the page needs is in the JSON of <script id="report-data">, written by
 * spacemind_cli/report/page.py; no network, no libraries. The view state (filters, sort, page)
 * lives in the URL hash, so a filtered view can be linked; "#q-<id>" links one question.
 */
(function () {
  "use strict";

  var D = JSON.parse(document.getElementById("report-data").textContent);
  var Q = D.questions, S = D.scenes, RUNS = D.runs, CMP = RUNS.length > 1;
  var DEFAULTS = { q: "", cat: "", ds: "", res: "", cmp: "", scene: "", sort: "scene", n: String(D.page_size), p: "1" };
  var KEYS = Object.keys(DEFAULTS);
  var state = Object.assign({}, DEFAULTS);
  var renders = 0;

  function $(sel, el) { return (el || document).querySelector(sel); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function fmt(x) { return (Math.round(x * 100) / 100).toString(); }

  // ---------------------------------------------------------------- filtering and sorting
  function hay(q) {
    if (q._h === undefined) {
      var parts = [q.id, q.k, q.q, q.qt, q.cat, q.ds, q.gt, S[q.sc].key].concat(q.o || []);
      q.r.forEach(function (a) { if (a) parts.push(a.p, a.a, a.s); });
      q._h = parts.filter(function (x) { return x !== null && x !== undefined; }).join("\n").toLowerCase();
    }
    return q._h;
  }

  function resultOf(q, spec) {
    var run = 0, v = spec;
    if (spec.indexOf("b:") === 0) { run = 1; v = spec.slice(2); }
    var a = q.r[run];
    return a ? a.v === v : false;
  }

  function cmpMatches(q, want) {
    var c = q.cmp || "";
    if (want === "disagree") return c.indexOf("disagree-") === 0;
    if (want === "agree") return c.indexOf("agree-") === 0;
    if (want === "a-better") return /-a$/.test(c);
    if (want === "b-better") return /-b$/.test(c);
    if (want === "only") return c.indexOf("only-") === 0;
    return true;
  }

  function matches(q) {
    if (state.cat && q.cat !== state.cat) return false;
    if (state.ds && q.ds !== state.ds) return false;
    if (state.scene && S[q.sc].key !== state.scene) return false;
    if (state.res && !resultOf(q, state.res)) return false;
    if (state.cmp && !cmpMatches(q, state.cmp)) return false;
    if (state.q) {
      var h = hay(q), words = state.q.toLowerCase().split(/\s+/);
      for (var i = 0; i < words.length; i++) if (words[i] && h.indexOf(words[i]) < 0) return false;
    }
    return true;
  }

  function score(q, run) { var a = q.r[run]; return a && typeof a.sc === "number" ? a.sc : null; }

  function sortKey(q, i) {
    switch (state.sort) {
      case "file": return [i];
      case "score-asc": { var s = score(q, 0); return [s === null ? 2 : s, q.sc, i]; }
      case "score-desc": { var t = score(q, 0); return [t === null ? 2 : -t, q.sc, i]; }
      case "diff-a": case "diff-b": {
        var a = score(q, 0), b = score(q, 1);
        var d = a === null || b === null ? 9 : (state.sort === "diff-a" ? b - a : a - b);
        return [d, q.sc, i];
      }
      default: return [q.sc, i];
    }
  }

  function visible() {
    var out = [];
    for (var i = 0; i < Q.length; i++) if (matches(Q[i])) out.push([sortKey(Q[i], i), i]);
    out.sort(function (x, y) {
      for (var k = 0; k < x[0].length; k++) if (x[0][k] !== y[0][k]) return x[0][k] < y[0][k] ? -1 : 1;
      return 0;
    });
    return out.map(function (x) { return x[1]; });
  }

  // ---------------------------------------------------------------- rendering
  function pill(a) {
    if (!a) return '<span class="pill v-none">not in this run</span>';
    var v = a.v, t;
    if (a.m === "acc") t = v === "right" ? "\u2713 correct" : "\u2717 wrong";
    else if (a.m === "mra") t = "MRA " + fmt(a.sc);
    else if (a.m === "em") t = a.sc ? "EM \u2713" : (a.r1 ? "EM \u2717 \u00b7 R1 \u2713" : "EM \u2717");
    else t = "unscored";
    return '<span class="pill v-' + v + '" title="score ' + (a.sc === undefined ? "none" : a.sc) + '">' + t + "</span>";
  }

  function val(x, cls) {
    if (x === null || x === undefined) return '<span class="none">\u2014</span>';
    return '<span class="' + (cls || "val") + '">' + esc(x) + "</span>";
  }

  function fact(k, v, cls) { return '<span class="f"><span class="k">' + k + "</span>" + val(v, cls) + "</span>"; }

  function answerRows(a, truth) {
    if (!a) return '<div class="facts"><span class="none">this question is not in this run</span></div>';
    var raw = a.p === null ? '<span class="none">(no prediction)</span>' : '<code class="raw">' + esc(a.p) + "</code>";
    var facts = fact("parsed", a.a);
    if (a.m) {
      // the official rules could not read a number from the reply's first word: MRA 0
      var scored = a.s === null && a.m === "mra" && a.p !== null ? "not a number" : a.s;
      facts += fact("scored as", scored, "val v-" + a.v);
    }
    if (truth !== undefined) facts += fact("truth", truth, "val truth");
    return '<div class="pred"><span class="k">prediction</span>' + raw + '</div><div class="facts">' + facts + "</div>";
  }

  function optionLetter(o, i) {
    var m = /^\s*\(?([A-Za-z])[.):]/.exec(o);
    return (m ? m[1] : String.fromCharCode(65 + i)).toUpperCase();
  }

  function optionsHtml(q) {
    if (!q.o || !q.o.length) return "";
    var gt = (q.gt || "").trim().toUpperCase();
    var picks = q.r.map(function (a) { return a && a.s ? String(a.s).trim().toUpperCase() : null; });
    return '<ol class="opts">' + q.o.map(function (o, i) {
      var L = optionLetter(o, i), cls = [], marks = "";
      if (L === gt) { cls.push("gt"); marks += '<span class="mark gt">truth</span>'; }
      picks.forEach(function (p, r) {
        if (p === L) {
          cls.push("pick");
          if (L !== gt) cls.push("miss");
          marks += '<span class="mark run' + r + '">' + (CMP ? esc(RUNS[r].short) : "picked") + "</span>";
        }
      });
      return '<li class="' + cls.join(" ") + '">' + esc(o) + marks + "</li>";
    }).join("") + "</ol>";
  }

  function cmpBadge(q) {
    if (!CMP || !q.cmp) return "";
    var c = q.cmp;
    if (c === "only-a") return '<span class="badge only">only in ' + esc(RUNS[0].short) + "</span>";
    if (c === "only-b") return '<span class="badge only">only in ' + esc(RUNS[1].short) + "</span>";
    var better = c.slice(c.lastIndexOf("-") + 1);
    var who = better === "a" ? esc(RUNS[0].short) + " better" : better === "b" ? esc(RUNS[1].short) + " better" : "same score";
    return c.indexOf("disagree-") === 0 ? '<span class="badge dis">disagree \u00b7 ' + who + "</span>"
      : '<span class="badge agree">agree</span>';
  }

  function card(q, qi) {
    var v = q.r[0] ? q.r[0].v : q.r[1].v;
    var head = '<div class="q-h"><a class="anchor" href="#' + esc(q.k) + '" title="link to this question">#' + esc(q.id === null ? q.k : q.id) + "</a>" +
      '<span class="tag cat">' + esc(q.cat) + "</span>" +
      (q.qt && q.qt !== q.cat ? '<span class="tag qt">' + esc(q.qt) + "</span>" : "") +
      (q.part ? '<span class="tag">' + esc(q.part) + "</span>" : "") +
      (q.ds ? '<span class="tag ds">' + esc(q.ds) + "</span>" : "") +
      cmpBadge(q) + '<span class="grow"></span>' + (CMP ? "" : pill(q.r[0])) + "</div>";
    var body = '<p class="qtext">' + esc(q.q) + "</p>" + optionsHtml(q);
    var answers;
    if (CMP) {
      answers = '<div class="runs">' + q.r.map(function (a, r) {
        var win = q.cmp && /^disagree-/.test(q.cmp) && q.cmp.slice(-1) === (r ? "b" : "a");
        return '<div class="run run' + r + (win ? " win" : "") + '"><div class="run-h"><span class="run-name">' + esc(RUNS[r].short + ": " + RUNS[r].label) + "</span>" + pill(a) + "</div>" + answerRows(a) + "</div>";
      }).join("") + '</div><div class="facts">' + fact("truth", q.gt, "val truth") + "</div>";
    } else {
      answers = '<div class="answers">' + answerRows(q.r[0], q.gt) + "</div>";
    }
    return '<article class="q v-' + v + (q.cmp && q.cmp.indexOf("disagree-") === 0 ? " disagree" : "") + '" id="' + esc(q.k) + '" data-qi="' + qi + '">' +
      head + body + answers + "</article>";
  }

  function strip(sc, set, label) {
    var sc_ = S[sc], frames = sc_.sets[set] || [];
    var items = frames.map(function (idx, j) {
      var t = sc_.th[String(idx)];
      if (!t) return '<span class="fr gone" title="frame ' + idx + ' unavailable"><span class="ix">' + idx + "</span></span>";
      return '<button class="fr" type="button" data-sc="' + sc + '" data-set="' + set + '" data-j="' + j + '" title="frame ' + idx + '">' +
        '<img loading="lazy" decoding="async" src="' + esc(t[0]) + '" width="' + t[1] + '" height="' + t[2] + '" alt="frame ' + idx + '">' +
        '<span class="ix">' + idx + "</span></button>";
    }).join("");
    return '<div class="strip-wrap">' + (label ? '<div class="strip-label">' + esc(label) + "</div>" : "") + '<div class="strip">' + items + "</div></div>";
  }

  function sceneHead(sc) {
    var s = S[sc], meta = [];
    if (s.kind) meta.push(s.kind);
    if (s.ds) meta.push(s.ds);
    var n = s.sets.length ? s.sets[0].length : 0;
    if (n) meta.push(n + " frames" + (n > 1 ? " (" + s.sets[0][0] + "\u2013" + s.sets[0][n - 1] + ")" : ""));
    var badge = s.st === "ok" ? "" : '<span class="badge st-' + esc(s.st) + '">' + esc(s.st.replace("-", " ")) + "</span>";
    var notes = (s.note ? '<div class="scene-note bad">' + esc(s.note) + "</div>" : "") +
      (s.notes || []).map(function (n) { return '<div class="scene-note">' + esc(n) + "</div>"; }).join("");
    return '<div class="scene-h"><h3><a href="#scene=' + encodeURIComponent(s.key) + '" title="only this scene">' + esc(s.key || "(no scene)") + "</a></h3>" +
      '<span class="meta">' + esc(meta.join(" \u00b7 ")) + "</span>" + badge + "</div>" + notes;
  }

  function groupHtml(sc, fs, cards) {
    var strips = "", seen = {};
    fs.forEach(function (set, r) {
      if (set < 0 || seen[set]) return;
      seen[set] = true;
      var label = CMP && fs.filter(function (x) { return x >= 0; }).some(function (x) { return x !== set; }) ? RUNS[r].label + "'s frames" : "";
      strips += strip(sc, set, label);
    });
    if (!strips && S[sc].st !== "ok") strips = '<div class="strip-wrap"><div class="strip empty">no frames to show</div></div>';
    return '<section class="scene' + (S[sc].st === "ok" ? "" : " bad") + '" data-scene="' + esc(S[sc].key) + '">' + sceneHead(sc) + strips + '<div class="qs">' + cards.join("") + "</div></section>";
  }

  function render(scrollTo) {
    var list = visible();
    var n = Math.max(1, parseInt(state.n, 10) || D.page_size);
    var pages = Math.max(1, Math.ceil(list.length / n));
    var p = Math.min(Math.max(1, parseInt(state.p, 10) || 1), pages);
    state.p = String(p);
    var slice = list.slice((p - 1) * n, p * n);
    var html = [], group = null;
    slice.forEach(function (qi) {
      var q = Q[qi], gk = q.sc + "|" + q.fs.join(",");
      if (!group || group.key !== gk) {
        if (group) html.push(groupHtml(group.sc, group.fs, group.cards));
        group = { key: gk, sc: q.sc, fs: q.fs, cards: [] };
      }
      group.cards.push(card(q, qi));
    });
    if (group) html.push(groupHtml(group.sc, group.fs, group.cards));
    $("#list").innerHTML = html.length ? html.join("") : '<p class="empty-list">No question matches these filters.</p>';
    var first = list.length ? (p - 1) * n + 1 : 0, last = Math.min(p * n, list.length);
    $("#count").textContent = list.length === Q.length
      ? "Showing " + first + "\u2013" + last + " of " + Q.length + " questions"
      : "Showing " + first + "\u2013" + last + " of " + list.length + " matching questions (" + Q.length + " in all)";
    document.querySelectorAll(".pager").forEach(function (pg) {
      $(".page", pg).textContent = "page " + p + " of " + pages;
      $(".prev", pg).disabled = p <= 1;
      $(".next", pg).disabled = p >= pages;
    });
    syncControls();
    if (!scrollTo) writeHash(); // a "#q-..." link stays in the address bar
    renders += 1;
    document.body.dataset.rendered = String(renders);
    document.body.dataset.visible = String(list.length);
    if (scrollTo) {
      var el = document.getElementById(scrollTo);
      if (el) {
        el.classList.add("hl");
        el.scrollIntoView({ block: "center" });
      }
    }
  }

  // ---------------------------------------------------------------- state <-> controls, hash
  var CONTROLS = { q: "#f-search", cat: "#f-cat", ds: "#f-ds", res: "#f-res", cmp: "#f-cmp", scene: "#f-scene", sort: "#f-sort", n: "#f-n" };

  function syncControls() {
    Object.keys(CONTROLS).forEach(function (k) {
      var el = $(CONTROLS[k]);
      if (el && el.value !== state[k]) el.value = state[k];
    });
  }

  function writeHash() {
    var parts = [];
    KEYS.forEach(function (k) { if (state[k] !== DEFAULTS[k]) parts.push(k + "=" + encodeURIComponent(state[k])); });
    var h = parts.length ? "#" + parts.join("&") : "";
    if (location.hash !== h) history.replaceState(null, "", location.pathname + location.search + h);
  }

  function readHash() {
    var h = decodeURIComponent(location.hash.slice(1));
    if (!h) return null;
    if (/^q-/.test(h)) return h;
    state = Object.assign({}, DEFAULTS);
    location.hash.slice(1).split("&").forEach(function (kv) {
      var i = kv.indexOf("="), k = kv.slice(0, i), v = decodeURIComponent(kv.slice(i + 1));
      if (i > 0 && KEYS.indexOf(k) >= 0) state[k] = v;
    });
    return null;
  }

  function goTo(anchor) {
    var qi = -1;
    for (var i = 0; i < Q.length; i++) if (Q[i].k === anchor) { qi = i; break; }
    if (qi < 0) return render();
    if (!matches(Q[qi])) state = Object.assign({}, DEFAULTS, { sort: state.sort, n: state.n });
    var list = visible(), pos = list.indexOf(qi), n = parseInt(state.n, 10) || D.page_size;
    state.p = String(Math.floor(pos / n) + 1);
    render(anchor);
  }

  function onHash() {
    var anchor = readHash();
    if (anchor) goTo(anchor); else render();
  }

  // ---------------------------------------------------------------- lightbox
  function openBox(sc, set, j) {
    var s = S[sc], frames = s.sets[set];
    var box = $("#lightbox");
    box.innerHTML = '<div class="lb-h"><b>' + esc(s.key) + "</b> \u00b7 " + frames.length + ' frames <span class="grow"></span><button type="button" class="lb-close">close \u2715</button></div><div class="lb-grid">' +
      frames.map(function (idx, k) {
        var t = s.th[String(idx)];
        return '<figure class="' + (k === j ? "cur" : "") + '">' + (t ? '<img src="' + esc(t[0]) + '" width="' + t[1] + '" height="' + t[2] + '" alt="frame ' + idx + '">' : '<span class="gone"></span>') +
          "<figcaption>frame " + idx + "</figcaption></figure>";
      }).join("") + "</div>";
    box.hidden = false;
    var cur = $("figure.cur", box);
    if (cur) cur.scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------- wiring
  function init() {
    Object.keys(CONTROLS).forEach(function (k) {
      var el = $(CONTROLS[k]);
      if (!el) return;
      var ev = el.tagName === "INPUT" ? "input" : "change";
      el.addEventListener(ev, function () {
        state[k] = el.value;
        state.p = "1";
        render();
      });
    });
    $("#f-reset").addEventListener("click", function () { state = Object.assign({}, DEFAULTS); render(); });
    document.querySelectorAll(".pager").forEach(function (pg) {
      $(".prev", pg).addEventListener("click", function () { state.p = String(+state.p - 1); render(); $("#browse").scrollIntoView(); });
      $(".next", pg).addEventListener("click", function () { state.p = String(+state.p + 1); render(); $("#browse").scrollIntoView(); });
    });
    $("#list").addEventListener("click", function (e) {
      var b = e.target.closest("button.fr");
      if (b) openBox(+b.dataset.sc, +b.dataset.set, +b.dataset.j);
    });
    $("#lightbox").addEventListener("click", function () { $("#lightbox").hidden = true; });
    document.addEventListener("keydown", function (e) { if (e.key === "Escape") $("#lightbox").hidden = true; });
    window.addEventListener("hashchange", onHash);
    onHash();
    document.body.dataset.ready = "1";
    if (window.performance && performance.mark) performance.mark("report-ready");
  }

  init();
})();
