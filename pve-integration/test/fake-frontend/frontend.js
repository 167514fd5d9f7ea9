// Fake of the Leptos panel app (what trunk + wasm-bindgen build as frontend.js).
// Implements the mount contract and records everything on window.__fakeRebalancer so
// the tests can count module evaluations, inits, mounts, unmounts and live timers.
const rec = window.__fakeRebalancer || (window.__fakeRebalancer = {
  evaluated: 0, inits: 0, mounts: [], unmounts: 0, live: 0, timers: 0,
  doubleUnmounts: 0, embeddedAtEval: null, autoMountedToBody: false,
});
rec.evaluated += 1;
rec.embeddedAtEval = window.__pveRebalancerEmbedded === true;
if (!rec.embeddedAtEval) {
  // What the real app does when not embedded: mount itself onto <body>.
  rec.autoMountedToBody = true;
  const d = document.createElement('div');
  d.className = 'fake-rebalancer-standalone';
  d.textContent = 'standalone app';
  document.body.appendChild(d);
}

// Like wasm-bindgen's default export: fetch and instantiate frontend_bg.wasm next to
// this module (instantiateStreaming insists on the application/wasm MIME type).
export default async function init() {
  rec.inits += 1;
  const url = new URL('frontend_bg.wasm', import.meta.url);
  const resp = await fetch(url);
  if (!resp.ok) {
    throw new Error(`fetching ${url} failed: HTTP ${resp.status}`);
  }
  await WebAssembly.instantiateStreaming(resp, {});
}

export function mount_panel(element, opts) {
  if (!(element instanceof HTMLElement)) {
    throw new TypeError('mount_panel: element must be an HTMLElement');
  }
  if (window.__fakeFailMount) {
    throw new Error('fake mount failure');
  }
  const entry = {
    id: rec.mounts.length + 1,
    view: opts.view,
    node: opts.node === undefined ? null : opts.node,
    hasNodeKey: Object.prototype.hasOwnProperty.call(opts, 'node'),
    apiBase: opts.apiBase,
    user: opts.user,
    csrfToken: opts.csrfToken,
    capsSections: Object.keys(opts.caps || {}).sort(),
    emptyAtMount: element.childNodes.length === 0,
    unmounted: false,
    ticks: 0,
  };
  rec.mounts.push(entry);
  rec.live += 1;
  const root = document.createElement('div');
  root.className = 'fake-rebalancer-app';
  root.dataset.mountId = String(entry.id);
  root.style.padding = '10px';
  root.textContent = `Fake rebalancer app #${entry.id}: view=${entry.view}` +
    (entry.node ? `, node=${entry.node}` : '') + `, api=${entry.apiBase}`;
  element.appendChild(root);
  // A timer stands in for the app's polling; unmount must stop it.
  const timer = setInterval(() => { entry.ticks += 1; }, 100);
  rec.timers += 1;
  let done = false;
  return {
    unmount() {
      if (done) {
        rec.doubleUnmounts += 1;
        return;
      }
      done = true;
      clearInterval(timer);
      rec.timers -= 1;
      root.remove();
      rec.live -= 1;
      rec.unmounts += 1;
      entry.unmounted = true;
    },
  };
}
