/* Flame graph of collapsed stacks ("root;...;leaf count" per line), drawn with divs.
   Root at the top; a click zooms into a frame; search highlights matching frames and
   says which share of the samples passes through them. No dependencies. */
(function () {
  "use strict";
  var ROW = 18, MIN_PX = 2, MAX_DEPTH = 128;

  function parse(text) {
    var root = {name: "all", value: 0, children: {}, parent: null, depth: 0};
    text.split("\n").forEach(function (line) {
      line = line.trim();
      var cut = line.lastIndexOf(" ");
      if (cut <= 0) return;
      var count = Number(line.slice(cut + 1));
      if (!(count > 0)) return;
      var node = root;
      root.value += count;
      line.slice(0, cut).split(";").slice(0, MAX_DEPTH).forEach(function (name) {
        var child = node.children[name];
        if (!child) {
          child = node.children[name] = {name: name, value: 0, children: {}, parent: node,
                                         depth: node.depth + 1};
        }
        child.value += count;
        node = child;
      });
    });
    return root;
  }

  function hue(name) {  // stable warm colour per function name
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return "hsl(" + (10 + h % 45) + "," + (60 + h % 25) + "%," + (62 + h % 12) + "%)";
  }

  function Flame(container, tip) {
    this.container = container;
    this.tip = tip;
    this.root = null;
    this.zoom = null;
    this.term = "";
  }

  Flame.prototype.load = function (text) {
    var oldPath = this.zoom ? pathOf(this.zoom) : null;
    this.root = parse(text);
    this.zoom = oldPath ? (find(this.root, oldPath) || this.root) : this.root;
    this.draw();
    return this.root.value;
  };

  function pathOf(node) {
    var names = [];
    for (; node && node.parent; node = node.parent) names.unshift(node.name);
    return names;
  }

  function find(root, names) {
    var node = root;
    for (var i = 0; i < names.length && node; i++) node = node.children[names[i]];
    return node;
  }

  Flame.prototype.draw = function () {
    var box = this.container;
    box.textContent = "";
    if (!this.root || !this.root.value) {
      box.style.height = "24px";
      box.setAttribute("data-total", "0");
      box.textContent = "no samples yet";
      return;
    }
    var width = box.clientWidth || 1000, zoom = this.zoom, scale = width / zoom.value;
    var maxDepth = 0, frames = 0, term = this.term;
    function frame(node, x, w, depth, dim) {
      var el = document.createElement("div");
      el.className = "frame" + (dim ? " dim" : "");
      el.style.left = x + "px";
      el.style.top = depth * ROW + "px";
      el.style.width = w + "px";
      el.style.background = node.parent ? hue(node.name) : "#ddd";
      el.textContent = w > 30 ? node.name : "";
      el.setAttribute("data-name", node.name);
      el.setAttribute("data-value", String(node.value));
      el.__node = node;
      if (term && node.parent && node.name.toLowerCase().indexOf(term) >= 0) {
        el.classList.add("hit");
      }
      box.appendChild(el);
      frames++;
      maxDepth = Math.max(maxDepth, depth);
    }
    function place(node, x, depth) {
      var w = node.value * scale;
      if (w < MIN_PX) return;
      frame(node, x, w, depth, false);
      var kids = Object.keys(node.children).map(function (k) { return node.children[k]; });
      kids.sort(function (p, q) { return p.name < q.name ? -1 : 1; });
      kids.forEach(function (kid) { place(kid, x, depth + 1); x += kid.value * scale; });
    }
    var chain = [];  // the zoomed frame's ancestors, drawn dimmed at full width
    for (var a = zoom.parent; a; a = a.parent) chain.unshift(a);
    chain.forEach(function (node, i) { frame(node, 0, width, i, true); });
    place(zoom, 0, chain.length);
    box.style.height = (maxDepth + 1) * ROW + 2 + "px";
    box.setAttribute("data-total", String(this.root.value));
    box.setAttribute("data-frames", String(frames));
  };

  /* Share of the samples under frames whose name contains `term` (each sample once). */
  Flame.prototype.matched = function (term) {
    var total = 0;
    function walk(node) {
      if (node.parent && node.name.toLowerCase().indexOf(term) >= 0) { total += node.value; return; }
      Object.keys(node.children).forEach(function (k) { walk(node.children[k]); });
    }
    if (this.root && term) walk(this.root);
    return total;
  };

  Flame.prototype.search = function (term) {
    this.term = (term || "").trim().toLowerCase();
    this.draw();
    return this.matched(this.term);
  };

  Flame.prototype.bind = function () {
    var self = this;
    this.container.addEventListener("click", function (ev) {
      var node = ev.target.__node;
      if (node) { self.zoom = node; self.draw(); }
    });
    this.container.addEventListener("mousemove", function (ev) {
      var node = ev.target.__node;
      if (!node || !self.tip) { if (self.tip) self.tip.hidden = true; return; }
      var pct = (100 * node.value / self.root.value).toFixed(1);
      self.tip.textContent = node.name + " — " + node.value + " samples (" + pct + " %)";
      self.tip.style.left = ev.clientX + 12 + "px";
      self.tip.style.top = ev.clientY + 12 + "px";
      self.tip.hidden = false;
    });
    this.container.addEventListener("mouseleave", function () { if (self.tip) self.tip.hidden = true; });
  };

  Flame.prototype.reset = function () { this.zoom = this.root; this.draw(); };

  window.AdaprofFlame = {Flame: Flame, parse: parse};
})();
