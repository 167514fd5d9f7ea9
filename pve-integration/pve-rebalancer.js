/*
 * pve-rebalancer.js: adds the pve-rebalancer panel to the Proxmox VE web UI.
 *
 * Copyright (C) pve-rebalancer contributors. SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * Loaded as ONE classic (non-module) script right after pvemanagerlib.js by a line
 * that install.sh puts into /usr/share/pve-manager/index.html.tpl:
 *
 *   <script type="text/javascript" src="/pve2/js/pve-rebalancer/pve-rebalancer.js"></script>
 *
 * It does three things, none of which patches Proxmox code:
 *   1. defines the Ext class PVE.rebalancer.Panel (xtype pveRebalancerPanel), a plain
 *      panel that loads the Leptos/WASM panel app and mounts it into its body;
 *   2. wraps PVE.panel.Config#initComponent so that Datacenter > HA gets a
 *      "Rebalancing" item (itemId ha-rebalancing, deep link
 *      #v1:0:18:4:::::::=ha-rebalancing);
 *   3. wraps PVE.node.Config#initComponent so that the node toolbar gets a
 *      "Maintenance" button opening the panel's maintenance view for that node.
 *
 * Panel app contract (the frontend is built by trunk without file hashes):
 *
 *   window.__pveRebalancerEmbedded = true;               // before the import: no auto-mount
 *   const mod = await import(`${ASSET_BASE}/frontend.js`); // wasm-bindgen ES module
 *   await mod.default();                                   // loads frontend_bg.wasm
 *   const handle = mod.mount_panel(element, {apiBase, view, node, user, csrfToken, caps});
 *   handle.unmount();
 *
 * ASSET_BASE defaults to /pve2/js/pve-rebalancer (window.PVE_REBALANCER_ASSET_BASE
 * overrides it); apiBase defaults to https://<this host>:8017
 * (window.PVE_REBALANCER_API_BASE overrides it).
 *
 * Written as plain ES2017 (plus dynamic import(), which every browser that runs the
 * PVE UI supports) in strict mode. Strict mode is why we never use Ext's callParent():
 * it reads Function.caller, which throws for strict functions. Instead we keep the
 * original methods and call them with .apply().
 */
(function () {
    'use strict';

    var DEFAULT_ASSET_BASE = '/pve2/js/pve-rebalancer';
    var DEFAULT_API_PORT = 8017;
    var TAB_ITEM_ID = 'ha-rebalancing';

    // Loaded on a page without ExtJS or without the PVE classes (some other page), or
    // loaded twice: do nothing at all, and never throw. Checked before Ext.define(),
    // which would create a global PVE namespace.
    if (typeof window === 'undefined' || typeof Ext === 'undefined' || !Ext.define ||
        typeof PVE === 'undefined' || !PVE || !PVE.panel || !PVE.panel.Config) {
        return;
    }
    if (window.__pveRebalancerInstalled) {
        return;
    }

    function log(level, msg, err) {
        if (typeof console !== 'undefined' && console[level]) {
            console[level]('pve-rebalancer: ' + msg, err === undefined ? '' : err);
        }
    }

    function stripSlash(s) {
        return String(s).replace(/\/+$/, '');
    }

    // Read at use time, not at load time, so a page may set the overrides later.
    function assetBase() {
        var b = window.PVE_REBALANCER_ASSET_BASE;
        return stripSlash(typeof b === 'string' && b !== '' ? b : DEFAULT_ASSET_BASE);
    }

    function apiBase() {
        var b = window.PVE_REBALANCER_API_BASE;
        if (typeof b === 'string' && b !== '') {
            return stripSlash(b);
        }
        // location.hostname keeps the brackets of an IPv6 literal, so this stays valid.
        return 'https://' + window.location.hostname + ':' + DEFAULT_API_PORT;
    }

    function guiCaps() {
        var caps = null;
        try {
            caps = Ext.state && Ext.state.Manager ? Ext.state.Manager.get('GuiCap') : null;
        } catch (e) {
            caps = null;
        }
        return caps && typeof caps === 'object' ? caps : {};
    }

    function hasCap(caps, section, priv) {
        return !!(caps[section] && caps[section][priv]);
    }

    // ---- loading the panel app ---------------------------------------------------

    // One promise for the whole page: the module is imported and initialised once and
    // shared by every panel instance. A failed load is forgotten, so that opening the
    // tab again retries; the retry gets a query string because browsers remember a
    // failed module URL and would not fetch it again.
    var appPromise = null;
    var appFailures = 0;

    function loadApp() {
        if (appPromise) {
            return appPromise;
        }
        var url = new URL(assetBase() + '/frontend.js', window.location.href).href;
        if (appFailures > 0) {
            url += (url.indexOf('?') >= 0 ? '&' : '?') + 'retry=' + appFailures;
        }
        // Tells the app not to mount itself onto <body> when its module is evaluated.
        window.__pveRebalancerEmbedded = true;
        var p = import(url).then(function (mod) {
            if (!mod || typeof mod.default !== 'function') {
                throw new Error(url + ' is not a wasm-bindgen module (no default init export)');
            }
            return Promise.resolve(mod.default()).then(function () {
                if (typeof mod.mount_panel !== 'function') {
                    throw new Error(url + ' does not export mount_panel()');
                }
                return mod;
            });
        });
        p.catch(function (err) {
            if (appPromise === p) {
                appPromise = null;
                appFailures += 1;
            }
            log('error', 'loading ' + url + ' failed', err);
        });
        appPromise = p;
        return p;
    }

    function errorText(err) {
        if (err && err.message) {
            return String(err.message);
        }
        return String(err);
    }

    // ---- the panel ---------------------------------------------------------------

    Ext.define('PVE.rebalancer.Panel', {
        extend: 'Ext.panel.Panel',
        alias: 'widget.pveRebalancerPanel',

        // The card title is already shown by the menu and the window title.
        header: false,
        border: false,

        // "cluster" (the Datacenter tab), "maintenance" (node window), ...
        pveRebalancerView: 'cluster',
        // Node name for node views, otherwise undefined.
        pveRebalancerNode: undefined,

        initComponent: function () {
            var me = this;
            // Explicit super call instead of callParent() (see the header comment).
            Ext.panel.Panel.prototype.initComponent.apply(me, arguments);
            me.pveRebHandle = null;
            me.pveRebHost = null;
            // Bumped on every unmount: a load that finishes later sees the change and
            // does not mount into a panel that is gone.
            me.pveRebGeneration = 0;
            me.on('afterrender', me.pveRebMount, me);
            // beforedestroy: the DOM is still there, so the app can clean up inside it.
            me.on('beforedestroy', me.pveRebUnmount, me);
            me.on('destroy', me.pveRebUnmount, me);
        },

        pveRebIsGone: function () {
            return !!(this.destroyed || this.isDestroyed || this.destroying);
        },

        pveRebMount: function () {
            var me = this;
            if (me.pveRebHost || me.pveRebIsGone() || !me.body || !me.body.dom) {
                return;
            }
            // The app gets its own empty element inside the panel body, so it never
            // touches the elements ExtJS keeps there for its layouts. It is laid over
            // the whole body (the body is position:relative) and scrolls by itself:
            // as a normal child it would sit below ExtJS's 100%-high layout container.
            var host = document.createElement('div');
            host.className = 'pve-rebalancer-host';
            host.style.position = 'absolute';
            host.style.top = '0';
            host.style.left = '0';
            host.style.right = '0';
            host.style.bottom = '0';
            host.style.overflow = 'auto';
            host.style.boxSizing = 'border-box';
            host.textContent = 'Loading the rebalancer panel\u2026';
            host.style.padding = '10px';
            me.body.dom.appendChild(host);
            me.pveRebHost = host;

            var generation = me.pveRebGeneration;
            var opts = {
                apiBase: apiBase(),
                view: me.pveRebalancerView || 'cluster',
                user: typeof Proxmox !== 'undefined' ? Proxmox.UserName : undefined,
                csrfToken: typeof Proxmox !== 'undefined' ? Proxmox.CSRFPreventionToken : undefined,
                caps: guiCaps(),
            };
            if (me.pveRebalancerNode !== undefined && me.pveRebalancerNode !== null) {
                opts.node = String(me.pveRebalancerNode);
            }

            loadApp().then(function (mod) {
                if (generation !== me.pveRebGeneration || me.pveRebIsGone()) {
                    return; // unmounted while loading
                }
                host.textContent = '';
                host.style.padding = '';
                var handle;
                try {
                    handle = mod.mount_panel(host, opts);
                } catch (err) {
                    log('error', 'mount_panel failed', err);
                    me.pveRebShowError('The rebalancer panel failed to start: ' + errorText(err));
                    return;
                }
                me.pveRebHandle = handle || null;
            }, function (err) {
                if (generation !== me.pveRebGeneration || me.pveRebIsGone()) {
                    return;
                }
                me.pveRebShowError('The rebalancer panel could not be loaded from ' +
                    assetBase() + '/frontend.js: ' + errorText(err) +
                    '\nCheck that the pve-rebalancer package is installed completely ' +
                    '(its web assets live in /usr/share/pve-manager/js/pve-rebalancer/) ' +
                    'and reload the page.');
            });
        },

        // Plain text, never HTML: the message may contain server-provided strings.
        pveRebShowError: function (text) {
            var host = this.pveRebHost;
            if (!host) {
                return;
            }
            host.textContent = '';
            host.style.padding = '10px';
            var box = document.createElement('div');
            box.className = 'pve-rebalancer-error';
            box.setAttribute('role', 'alert');
            box.style.whiteSpace = 'pre-wrap';
            var icon = document.createElement('i');
            icon.className = 'fa fa-exclamation-triangle';
            icon.style.color = '#d9534f';
            icon.style.marginRight = '6px';
            box.appendChild(icon);
            box.appendChild(document.createTextNode(text));
            host.appendChild(box);
        },

        // Idempotent: runs on beforedestroy and again on destroy.
        pveRebUnmount: function () {
            var me = this;
            me.pveRebGeneration += 1;
            var handle = me.pveRebHandle;
            me.pveRebHandle = null;
            if (handle && typeof handle.unmount === 'function') {
                try {
                    handle.unmount();
                } catch (err) {
                    log('warn', 'unmount failed', err);
                }
            }
            if (me.pveRebHost) {
                if (me.pveRebHost.parentNode) {
                    me.pveRebHost.parentNode.removeChild(me.pveRebHost);
                }
                me.pveRebHost = null;
            }
        },
    });

    // Opens the maintenance view for one node in a modal window. Closing the window
    // destroys it and with it the panel, which unmounts the app.
    function openMaintenanceWindow(node) {
        var vw = Ext.getBody().getViewSize();
        var win = Ext.create('Ext.window.Window', {
            title: 'Maintenance: node \'' + Ext.htmlEncode(node) + '\'',
            iconCls: 'fa fa-wrench',
            cls: 'pve-rebalancer-maintenance-window',
            modal: true,
            constrain: true,
            width: Math.max(400, Math.min(1100, vw.width - 60)),
            height: Math.max(300, Math.min(800, vw.height - 60)),
            layout: 'fit',
            items: [{
                xtype: 'pveRebalancerPanel',
                pveRebalancerView: 'maintenance',
                pveRebalancerNode: node,
            }],
        });
        win.show();
        return win;
    }

    Ext.ns('PVE.rebalancer');
    PVE.rebalancer.openMaintenanceWindow = openMaintenanceWindow;
    PVE.rebalancer.loadApp = loadApp;

    // ---- Datacenter > HA > Rebalancing ---------------------------------------------

    // Inserts our item after the last item of the HA section. Works for both PVE 8.4
    // (ha, ha-groups, ha-fencing) and 9.x (ha, ha-rules, ha-fencing): we only look for
    // "ha" and items grouped under it. Without an HA section (the user lacks
    // Sys.Audit) nothing is added; a groups:['ha'] item without its parent would break
    // the menu, and such a user could not use the rebalancer anyway.
    function addRebalancingItem(items) {
        var last = -1;
        for (var i = 0; i < items.length; i++) {
            var it = items[i];
            if (!it) {
                continue;
            }
            if (it.itemId === TAB_ITEM_ID) {
                return; // already there
            }
            if (it.itemId === 'ha' || (Array.isArray(it.groups) && it.groups.indexOf('ha') >= 0)) {
                last = i;
            }
        }
        if (last < 0) {
            return;
        }
        items.splice(last + 1, 0, {
            xtype: 'pveRebalancerPanel',
            title: 'Rebalancing',
            iconCls: 'fa fa-balance-scale',
            itemId: TAB_ITEM_ID,
            groups: ['ha'],
        });
    }

    // We hook the base class rather than PVE.dc.Config: PVE.dc.Config fills this.items
    // and then calls the base initComponent, which builds the menu tree and restores
    // the selected tab from the URL. Adding our item right before that is what makes
    // deep links and page reloads land on it.
    function hookDatacenter() {
        if (!(PVE.panel && PVE.panel.Config && PVE.dc && PVE.dc.Config)) {
            return;
        }
        var baseInit = PVE.panel.Config.prototype.initComponent;
        if (typeof baseInit !== 'function') {
            return;
        }
        Ext.override(PVE.panel.Config, {
            initComponent: function () {
                try {
                    if (PVE.dc && PVE.dc.Config && this instanceof PVE.dc.Config &&
                        Array.isArray(this.items)) {
                        addRebalancingItem(this.items);
                    }
                } catch (err) {
                    log('error', 'could not add the Rebalancing tab', err);
                }
                return baseInit.apply(this, arguments);
            },
        });
    }

    // ---- node toolbar: Maintenance -------------------------------------------------

    function maintenanceButton(node) {
        var caps = guiCaps();
        var missing = [];
        if (!hasCap(caps, 'nodes', 'Sys.Modify')) {
            missing.push('Sys.Modify');
        }
        if (!hasCap(caps, 'vms', 'VM.Migrate')) {
            missing.push('VM.Migrate');
        }
        var tooltip = missing.length
            ? 'Maintenance needs the privilege' + (missing.length > 1 ? 's ' : ' ') +
              missing.join(' and ') + ', which you do not have.'
            : 'Put this node into maintenance and move its guests away (pve-rebalancer)';
        return {
            xtype: 'button',
            itemId: 'pveRebalancerMaintenance',
            text: 'Maintenance',
            iconCls: 'fa fa-wrench',
            disabled: missing.length > 0,
            tooltip: tooltip,
            handler: function () {
                openMaintenanceWindow(node);
            },
        };
    }

    function findToolbar(panel) {
        var tb = panel.getDockedComponent ? panel.getDockedComponent('toolbar') : null;
        return tb || (panel.down ? panel.down('#toolbar') : null);
    }

    function hookNode() {
        if (!(PVE.node && PVE.node.Config)) {
            return;
        }
        var nodeInit = PVE.node.Config.prototype.initComponent;
        if (typeof nodeInit !== 'function') {
            return;
        }
        Ext.override(PVE.node.Config, {
            initComponent: function () {
                var result = nodeInit.apply(this, arguments);
                try {
                    var sel = this.pveSelNode;
                    var node = sel && sel.data ? sel.data.node : undefined;
                    var tb = findToolbar(this);
                    if (node && tb && !tb.getComponent('pveRebalancerMaintenance')) {
                        // Before the help button, which the base class puts last.
                        var help = this.helpButton && tb.items.indexOf(this.helpButton) >= 0
                            ? this.helpButton
                            : tb.down('proxmoxHelpButton');
                        var idx = help ? tb.items.indexOf(help) : -1;
                        if (idx < 0) {
                            idx = tb.items.getCount();
                        }
                        tb.insert(idx, maintenanceButton(node));
                    }
                } catch (err) {
                    log('error', 'could not add the Maintenance button', err);
                }
                return result;
            },
        });
    }

    // ---- install the hooks -----------------------------------------------------------

    try {
        hookDatacenter();
    } catch (err) {
        log('error', 'Datacenter hook failed', err);
    }
    try {
        hookNode();
    } catch (err) {
        log('error', 'node hook failed', err);
    }
    window.__pveRebalancerInstalled = true;
}());
