// Browser tests: pve-rebalancer.js inside real ExtJS 6.2 (npm extjs-gpl) in Debian's
// headless Chromium, against our stand-in of the PVE config panels and a fake panel app.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './server.mjs';
import { launchBrowser, newPage, screenshot } from './helpers.mjs';

const DC_HASH = 'v1:0:18:4:::::::';
const DEEP_LINK = `${DC_HASH}=ha-rebalancing`;
const NODE_HASH = 'v1:0:=node%2Fpve2:4:=summary::::::';
const MODULE_PATH = '/pve2/js/pve-rebalancer/frontend.js';
const T = { timeout: 60_000 };

let srv;
let browser;

before(async () => {
  srv = await startServer();
  browser = await launchBrowser();
}, { timeout: 90_000 });

after(async () => {
  await browser?.close();
  await srv?.close();
}, { timeout: 30_000 });

// Opens the stand-in page and waits until the workspace exists.
async function open(query = '', hash = '') {
  const page = await newPage(browser);
  await load(page, query, hash);
  return page;
}

async function load(page, query = '', hash = '') {
  await page.goto(`${srv.base}/${query ? `?${query}` : ''}${hash ? `#${hash}` : ''}`);
  await page.waitForFunction(() => window.__standinReady === true, null, { timeout: 20_000 });
}

async function finish(page, { allowConsoleErrors = false } = {}) {
  try {
    assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
    if (!allowConsoleErrors) {
      assert.deepEqual(page.consoleErrors, [], 'console errors in the page');
    }
  } finally {
    await page.context().close();
  }
}

const fake = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.__fakeRebalancer || null)));

async function waitFake(page, predicateSrc, arg) {
  await page.waitForFunction(
    ([src, a]) => {
      const f = window.__fakeRebalancer;
      // eslint-disable-next-line no-new-func
      return !!f && new Function('f', 'a', `return (${src});`)(f, a);
    },
    [predicateSrc, arg],
    { timeout: 10_000 },
  );
}

const menuTree = (page) => page.evaluate(() => {
  const walk = (n) => ({ id: n.getId(), text: n.get('text'), iconCls: n.get('iconCls'),
    children: n.childNodes.map(walk) });
  return walk(PVE.StandIn.main.store.getRoot()).children;
});

const activeTab = (page) => page.evaluate(() => PVE.StandIn.main.getLayout().getActiveItem().itemId);

async function clickMenu(page, text) {
  await page.locator('.x-treelist-item-text', { hasText: new RegExp(`^${text}$`) }).click();
  await page.waitForFunction(
    (t) => PVE.StandIn.main.getLayout().getActiveItem().title === t, text, { timeout: 10_000 });
}

function haSection(tree) {
  const ha = tree.find((n) => n.id === 'ha');
  assert.ok(ha, 'HA section exists');
  return ha;
}

for (const [layout, expected] of [
  ['9', ['ha-rules', 'ha-fencing', 'ha-rebalancing']],
  ['8.4', ['ha-groups', 'ha-fencing', 'ha-rebalancing']],
]) {
  test(`"Rebalancing" is the last item under HA (PVE ${layout} layout)`, T, async () => {
    const page = await open(`layout=${layout}`);
    const tree = await menuTree(page);
    const ha = haSection(tree);
    assert.deepEqual(ha.children.map((c) => c.id), expected);
    const item = ha.children.at(-1);
    assert.equal(item.text, 'Rebalancing');
    assert.equal(item.iconCls, 'fa fa-balance-scale');
    // Exactly once in the whole menu, and not at top level.
    const all = JSON.stringify(tree).match(/"ha-rebalancing"/g) || [];
    assert.equal(all.length, 1);
    // Visible in the DOM, and selectable by clicking it.
    await clickMenu(page, 'Rebalancing');
    assert.equal(await activeTab(page), 'ha-rebalancing');
    await waitFake(page, 'f.live === 1');
    await screenshot(page, `dc-ha-rebalancing-${layout === '9' ? '9x' : layout}`);
    await finish(page);
  });
}

test('deep link #v1:0:18:4:::::::=ha-rebalancing selects the tab, also after a reload', T, async () => {
  const page = await open('', DEEP_LINK);
  assert.equal(await activeTab(page), 'ha-rebalancing');
  const selected = await page.evaluate(() => PVE.StandIn.main.down('#menu').getSelection().getId());
  assert.equal(selected, 'ha-rebalancing');
  await waitFake(page, 'f.live === 1');

  // Go elsewhere, come back by clicking, reload: the state in the hash lands on our tab.
  await clickMenu(page, 'Summary');
  assert.match(await page.evaluate(() => location.hash), /=summary$/);
  await clickMenu(page, 'Rebalancing');
  assert.equal(await page.evaluate(() => location.hash), `#${DEEP_LINK}`);
  await page.reload();
  await page.waitForFunction(() => window.__standinReady === true, null, { timeout: 20_000 });
  assert.equal(await activeTab(page), 'ha-rebalancing');
  await waitFake(page, 'f.live === 1 && f.mounts.length === 1');
  await finish(page);
});

test('panel mounts into the card body, unmounts on tab switch, re-mounts on return', T, async () => {
  const before = srv.hits.get(MODULE_PATH) || 0;
  const page = await open('', DEEP_LINK);
  await waitFake(page, 'f.mounts.length === 1');

  const check = () => page.evaluate(() => {
    const panels = Ext.ComponentQuery.query('pveRebalancerPanel');
    const p = panels[0];
    const app = document.querySelector('.fake-rebalancer-app');
    return {
      panels: panels.length,
      inBody: !!(p && app && p.body.dom.contains(app)),
      isCard: !!p && PVE.StandIn.main.getLayout().getActiveItem() === p,
      apps: document.querySelectorAll('.fake-rebalancer-app').length,
      hosts: document.querySelectorAll('.pve-rebalancer-host').length,
    };
  });
  assert.deepEqual(await check(), { panels: 1, inBody: true, isCard: true, apps: 1, hosts: 1 });
  let f = await fake(page);
  assert.equal(f.mounts[0].view, 'cluster');
  assert.equal(f.mounts[0].hasNodeKey, false, 'no node for the cluster view');
  assert.equal(f.mounts[0].apiBase, 'https://127.0.0.1:8017');
  assert.equal(f.mounts[0].user, 'root@pam');
  assert.equal(f.mounts[0].csrfToken, 'CSRF-TOKEN-FOR-TEST');
  assert.deepEqual(f.mounts[0].capsSections, ['access', 'dc', 'mapping', 'nodes', 'sdn', 'storage', 'vms']);
  assert.equal(f.mounts[0].emptyAtMount, true);
  assert.equal(f.embeddedAtEval, true, 'window.__pveRebalancerEmbedded set before the import');
  assert.equal(f.autoMountedToBody, false);

  for (let round = 1; round <= 3; round++) {
    await clickMenu(page, 'Fencing');
    await waitFake(page, 'f.unmounts === a', round);
    f = await fake(page);
    assert.equal(f.live, 0);
    assert.equal(f.timers, 0, 'the app timer is stopped on unmount');
    assert.deepEqual(await check(), { panels: 0, inBody: false, isCard: false, apps: 0, hosts: 0 });

    await clickMenu(page, 'Rebalancing');
    await waitFake(page, 'f.mounts.length === a && f.live === 1', round + 1);
    assert.deepEqual(await check(), { panels: 1, inBody: true, isCard: true, apps: 1, hosts: 1 });
  }
  f = await fake(page);
  assert.equal(f.mounts.length, 4);
  assert.equal(f.unmounts, 3);
  assert.equal(f.doubleUnmounts, 0);
  assert.equal(f.evaluated, 1, 'module evaluated once');
  assert.equal(f.inits, 1, 'init() called once');
  assert.equal((srv.hits.get(MODULE_PATH) || 0) - before, 1, 'frontend.js fetched once');
  await finish(page);
});

test('leaving the tab while the app is still loading mounts nothing', T, async () => {
  const page = await open('', `${DC_HASH}=summary`);
  // Both switches happen in one synchronous turn, before import() can resolve.
  await page.evaluate(() => {
    PVE.StandIn.main.selectTab('ha-rebalancing');
    PVE.StandIn.main.selectTab('ha-fencing');
  });
  await waitFake(page, 'f.inits === 1');
  await page.waitForTimeout(300);
  let f = await fake(page);
  assert.equal(f.mounts.length, 0);
  assert.equal(f.live, 0);
  assert.equal(await page.locator('.pve-rebalancer-host').count(), 0);
  await clickMenu(page, 'Rebalancing');
  await waitFake(page, 'f.mounts.length === 1 && f.live === 1');
  await finish(page);
});

test('node toolbar has "Maintenance" before Help; it opens the maintenance view for the node', T, async () => {
  const page = await open('', NODE_HASH);
  const items = await page.evaluate(() => PVE.StandIn.main.getDockedComponent('toolbar').items.items
    .map((i) => i.text || i.xtype));
  assert.deepEqual(items.slice(2), ['Reboot', 'Shutdown', 'Shell', 'Bulk Actions', 'Maintenance', 'Help']);
  const btn = await page.evaluate(() => {
    const b = PVE.StandIn.main.down('#pveRebalancerMaintenance');
    return { disabled: b.isDisabled(), iconCls: b.iconCls, visible: b.isVisible() };
  });
  assert.deepEqual(btn, { disabled: false, iconCls: 'fa fa-wrench', visible: true });
  await screenshot(page, 'node-toolbar-maintenance');

  await page.locator('.x-btn', { hasText: /^Maintenance$/ }).click();
  const win = page.locator('.pve-rebalancer-maintenance-window');
  await win.waitFor({ state: 'visible', timeout: 10_000 });
  assert.match(await win.locator('.x-title-text').first().innerText(), /pve2/);
  await waitFake(page, 'f.mounts.length === 1 && f.live === 1');
  const f = await fake(page);
  assert.equal(f.mounts[0].view, 'maintenance');
  assert.equal(f.mounts[0].node, 'pve2');
  const inWindow = await page.evaluate(() => {
    const w = Ext.ComponentQuery.query('window')
      .find((x) => x.cls === 'pve-rebalancer-maintenance-window');
    const p = w.down('pveRebalancerPanel');
    return p.body.dom.contains(document.querySelector('.fake-rebalancer-app'));
  });
  assert.equal(inWindow, true);
  await screenshot(page, 'maintenance-window');

  // Closing the window destroys the panel and unmounts the app.
  await win.locator('.x-tool-close').click();
  await waitFake(page, 'f.unmounts === 1 && f.live === 0 && f.timers === 0');
  assert.equal(await page.locator('.pve-rebalancer-maintenance-window').count(), 0);

  // Open it again: a clean second mount, module still loaded only once.
  await page.locator('.x-btn', { hasText: /^Maintenance$/ }).click();
  await waitFake(page, 'f.mounts.length === 2 && f.live === 1');
  const f2 = await fake(page);
  assert.equal(f2.evaluated, 1);
  assert.equal(f2.inits, 1);
  await page.evaluate(() => Ext.ComponentQuery.query('window')
    .find((w) => w.cls === 'pve-rebalancer-maintenance-window').close());
  await waitFake(page, 'f.unmounts === 2 && f.live === 0');
  await finish(page);
});

for (const [caps, missing, present] of [
  ['nomodify', ['Sys.Modify'], ['VM.Migrate']],
  ['nomigrate', ['VM.Migrate'], ['Sys.Modify']],
  ['none', ['Sys.Modify', 'VM.Migrate'], []],
]) {
  test(`Maintenance is disabled without ${missing.join(' + ')}, and the tooltip says so`, T, async () => {
    const page = await open(`caps=${caps}`, NODE_HASH);
    const btn = await page.evaluate(() => {
      const b = PVE.StandIn.main.down('#pveRebalancerMaintenance');
      return { disabled: b.isDisabled(), tooltip: String(b.tooltip),
        qtip: b.el.dom.getAttribute('data-qtip') };
    });
    assert.equal(btn.disabled, true);
    for (const p of missing) {
      assert.ok(btn.tooltip.includes(p), `tooltip names ${p}: ${btn.tooltip}`);
    }
    for (const p of present) {
      assert.ok(!btn.tooltip.includes(p), `tooltip does not name ${p}: ${btn.tooltip}`);
    }
    assert.equal(btn.qtip, btn.tooltip, 'tooltip is on the element');
    // Clicking a disabled button opens nothing.
    await page.locator('.x-btn', { hasText: /^Maintenance$/ }).click({ force: true, timeout: 5_000 });
    await page.waitForTimeout(200);
    assert.equal(await page.evaluate(() => Ext.ComponentQuery.query('window')
      .filter((w) => w.cls === 'pve-rebalancer-maintenance-window').length), 0);
    if (caps === 'none') {
      await screenshot(page, 'maintenance-disabled');
    }
    await finish(page);
  });
}

test('a broken asset base shows a readable error instead of a blank panel', T, async () => {
  const page = await open('assets=/no-such-dir', DEEP_LINK);
  const err = page.locator('.pve-rebalancer-error');
  await err.waitFor({ state: 'visible', timeout: 10_000 });
  const text = await err.innerText();
  assert.match(text, /could not be loaded/);
  assert.match(text, /\/no-such-dir\/frontend\.js/);
  assert.ok(text.length < 2000);
  await screenshot(page, 'asset-error');

  // Opening the tab again retries (with a cache-busting query) and still explains.
  await clickMenu(page, 'Fencing');
  assert.equal(await page.locator('.pve-rebalancer-host').count(), 0);
  await clickMenu(page, 'Rebalancing');
  await page.locator('.pve-rebalancer-error').waitFor({ state: 'visible', timeout: 10_000 });
  assert.equal(srv.hits.get('/no-such-dir/frontend.js?retry=1'), 1);
  await finish(page, { allowConsoleErrors: true });
});

test('mount_panel throwing shows the error in the panel', T, async () => {
  const page = await open('failmount=1', DEEP_LINK);
  const err = page.locator('.pve-rebalancer-error');
  await err.waitFor({ state: 'visible', timeout: 10_000 });
  assert.match(await err.innerText(), /failed to start: fake mount failure/);
  await finish(page, { allowConsoleErrors: true });
});

test('window.PVE_REBALANCER_API_BASE overrides the API base', T, async () => {
  const page = await open(`api=${encodeURIComponent('https://lb.example.test:9443/')}`, DEEP_LINK);
  await waitFake(page, 'f.mounts.length === 1');
  assert.equal((await fake(page)).mounts[0].apiBase, 'https://lb.example.test:9443');
  await finish(page);
});

for (const [file, what] of [['blank.html', 'without ExtJS'], ['ext-only.html', 'with ExtJS but no PVE classes']]) {
  test(`does nothing on a page ${what}`, T, async () => {
    const page = await newPage(browser);
    await page.goto(`${srv.base}/standin/${file}`);
    await page.waitForLoadState('load', { timeout: 20_000 });
    const state = await page.evaluate(() => ({
      pve: typeof window.PVE,
      installed: window.__pveRebalancerInstalled === true,
      cls: !!(window.Ext && Ext.ClassManager && Ext.ClassManager.get('PVE.rebalancer.Panel')),
    }));
    assert.deepEqual(state, { pve: 'undefined', installed: false, cls: false });
    await finish(page);
  });
}
