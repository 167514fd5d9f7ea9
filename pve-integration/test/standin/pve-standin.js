/*
 * A small STAND-IN for the three Proxmox VE classes that pve-rebalancer.js hooks:
 * PVE.panel.Config, PVE.dc.Config and PVE.node.Config.
 *
 * Written from scratch from the behaviour described in shared/research/pve-api.md §5.2;
 * it contains no Proxmox code. It mimics only what the injection relies on:
 *   - subclasses fill `me.items` with declarative configs ({xtype, title, iconCls,
 *     itemId, groups}) and then call the base initComponent via callParent();
 *   - the base class prepends a "Search" item, builds a tree store with insertNodes()
 *     (remembering configs in savedItems, nesting by `groups`, parent first), docks a
 *     top toolbar (itemId 'toolbar': title, '->', tbar..., help button) and a left
 *     treelist (itemId 'menu'), and restores the selected tab from the URL hash;
 *   - switching tabs creates the new card from savedItems and destroys the old one.
 *
 * Deliberately NOT strict mode and using callParent(), like the real code, so the test
 * proves our strict-mode wrapper around these methods does not break callParent().
 */
/* global Ext, PVE, Proxmox */
Ext.ns('PVE.StandIn');

// ---- URL hash state: #v1:<view>:<rid>:<ltab>:<nodetab>:<storagetab>:<sdntab>:<pooltab>:<kvmtab>:<lxctab>:<dctab>
PVE.StandIn.FIELDS = ['view', 'rid', 'ltab', 'nodetab', 'storagetab', 'sdntab', 'pooltab',
    'kvmtab', 'lxctab', 'dctab'];

PVE.StandIn.readState = function () {
    var h = window.location.hash.replace(/^#/, '');
    var parts = h.split(':');
    var state = {};
    if (parts[0] !== 'v1') {
        return state;
    }
    PVE.StandIn.FIELDS.forEach(function (name, i) {
        var v = parts[i + 1];
        if (v === undefined || v === '') {
            return;
        }
        // "=value" is a string; plain numbers are indexes into tables of well known
        // values in the real UI, which the stand-in does not need.
        state[name] = v.charAt(0) === '=' ? decodeURIComponent(v.slice(1)) : Number(v);
    });
    return state;
};

PVE.StandIn.writeState = function (name, value) {
    var h = window.location.hash.replace(/^#/, '');
    var parts = h.split(':');
    if (parts[0] !== 'v1') {
        parts = ['v1', '0', '18', '4'];
    }
    while (parts.length < PVE.StandIn.FIELDS.length + 1) {
        parts.push('');
    }
    parts[PVE.StandIn.FIELDS.indexOf(name) + 1] = '=' + encodeURIComponent(value);
    window.history.replaceState(null, '', '#' + parts.join(':'));
};

// Placeholder for every tab the stand-in does not implement.
Ext.define('PVE.StandIn.Card', {
    extend: 'Ext.panel.Panel',
    alias: 'widget.pveStandInCard',
    header: false,
    border: false,
    bodyPadding: 10,
    initComponent: function () {
        this.html = Ext.htmlEncode('Stand-in card "' + this.title + '"');
        this.callParent();
    },
});

Ext.define('Proxmox.button.Help', {
    extend: 'Ext.button.Button',
    alias: 'widget.proxmoxHelpButton',
    text: 'Help',
    iconCls: 'fa fa-question-circle',
});

Ext.define('PVE.panel.Config', {
    extend: 'Ext.panel.Panel',
    alias: 'widget.pvePanelConfig',

    layout: 'card',
    border: false,
    header: false,
    hstateid: undefined, // 'dctab' or 'nodetab'

    initComponent: function () {
        var me = this;
        var items = [{ xtype: 'pveStandInCard', title: 'Search', itemId: 'search',
            iconCls: 'fa fa-search' }].concat(me.items || []);

        me.savedItems = {};
        me.menuNodes = {};
        me.menuRoot = { expanded: true, children: [] };
        me.insertNodes(items);
        me.store = Ext.create('Ext.data.TreeStore', { root: me.menuRoot });

        var state = PVE.StandIn.readState();
        var wanted = state[me.hstateid];
        var first = typeof wanted === 'string' && me.savedItems[wanted]
            ? wanted : (items[1] || items[0]).itemId;

        me.helpButton = Ext.create('Proxmox.button.Help', { itemId: 'help' });
        var tbarItems = [{ xtype: 'tbtext', itemId: 'title', html: Ext.htmlEncode(me.title) }, '->']
            .concat(me.tbar || [], [me.helpButton]);
        me.tbar = undefined;

        me.items = [me.cardConfig(first)];
        me.activeItem = 0;
        me.dockedItems = [{
            xtype: 'toolbar',
            dock: 'top',
            itemId: 'toolbar',
            items: tbarItems,
        }, {
            xtype: 'container',
            dock: 'left',
            width: 200,
            scrollable: 'y',
            style: { 'border-right': '1px solid #cfcfcf', background: '#fff' },
            items: [{
                xtype: 'treelist',
                itemId: 'menu',
                store: me.store,
                singleExpand: false,
                listeners: {
                    selectionchange: function (list, rec) {
                        if (rec) {
                            me.selectTab(rec.getId());
                        }
                    },
                },
            }],
        }];

        me.callParent();

        me.on('afterrender', function () {
            var menu = me.down('#menu');
            menu.setSelection(me.store.getNodeById(first));
        });
    },

    // Adds item configs to the menu; `groups` nests under an earlier item.
    insertNodes: function (items) {
        var me = this;
        items.forEach(function (it) {
            if (!it.itemId) {
                throw new Error('stand-in: every item needs an itemId');
            }
            me.savedItems[it.itemId] = it;
            var node = { id: it.itemId, text: it.title, iconCls: it.iconCls, leaf: true };
            var parentId = it.groups && it.groups[0];
            if (me.store) { // after construction: insert into the live store
                var parentRec = parentId ? me.store.getNodeById(parentId) : me.store.getRoot();
                if (!parentRec) {
                    throw new Error('stand-in: group parent "' + parentId + '" not found');
                }
                parentRec.set('leaf', false);
                parentRec.appendChild(node);
                parentRec.expand();
                return;
            }
            if (parentId) {
                var parent = me.menuNodes[parentId];
                if (!parent) {
                    throw new Error('stand-in: group parent "' + parentId + '" must come first');
                }
                parent.leaf = false;
                parent.expanded = true;
                (parent.children = parent.children || []).push(node);
            } else {
                me.menuRoot.children.push(node);
            }
            me.menuNodes[it.itemId] = node;
        });
    },

    cardConfig: function (itemId) {
        var cfg = Ext.apply({ border: false }, this.savedItems[itemId]);
        if (!cfg.xtype) {
            cfg.xtype = 'pveStandInCard';
        }
        return cfg;
    },

    // Creates the card from savedItems and destroys the previous one.
    selectTab: function (itemId) {
        var me = this;
        if (!me.savedItems[itemId]) {
            return;
        }
        var cur = me.getLayout().getActiveItem();
        if (cur && cur.itemId === itemId) {
            return;
        }
        var card = me.add(me.cardConfig(itemId));
        me.setActiveItem(card);
        if (cur) {
            cur.destroy();
        }
        var menu = me.down('#menu');
        var rec = me.store.getNodeById(itemId);
        if (menu.getSelection() !== rec) {
            menu.setSelection(rec);
        }
        PVE.StandIn.writeState(me.hstateid, itemId);
    },
});

Ext.define('PVE.dc.Config', {
    extend: 'PVE.panel.Config',
    alias: 'widget.pveDcConfig',

    initComponent: function () {
        var me = this;
        me.items = [];
        Ext.apply(me, { title: 'Datacenter', hstateid: 'dctab' });

        var item = function (itemId, title, icon, group) {
            var it = { itemId: itemId, title: title, iconCls: 'fa fa-' + icon };
            if (group) {
                it.groups = [group];
            }
            me.items.push(it);
        };
        item('summary', 'Summary', 'book');
        item('notes', 'Notes', 'sticky-note-o');
        item('cluster', 'Cluster', 'server');
        item('options', 'Options', 'gear');
        item('storage', 'Storage', 'database');
        item('backup', 'Backup', 'floppy-o');
        item('permissions', 'Permissions', 'unlock');
        item('users', 'Users', 'user', 'permissions');
        item('roles', 'Roles', 'male', 'permissions');
        item('ha', 'HA', 'heartbeat');
        if (PVE.StandIn.layout === '8.4') {
            item('ha-groups', 'Groups', 'object-group', 'ha');
        } else {
            item('ha-rules', 'Affinity Rules', 'gears', 'ha');
        }
        item('ha-fencing', 'Fencing', 'bolt', 'ha');
        item('sdn', 'SDN', 'sitemap');
        item('sdnzone', 'Zones', 'th', 'sdn');
        item('sdnvnet', 'VNets', 'network-wired', 'sdn');
        item('acme', 'ACME', 'certificate');
        item('firewall', 'Firewall', 'shield');
        item('metricservers', 'Metric Server', 'bar-chart');
        item('support', 'Support', 'comments-o');

        me.callParent();
    },
});

Ext.define('PVE.node.Config', {
    extend: 'PVE.panel.Config',
    alias: 'widget.pveNodeConfig',

    initComponent: function () {
        var me = this;
        var nodename = me.pveSelNode && me.pveSelNode.data && me.pveSelNode.data.node;
        if (!nodename) {
            throw new Error('no node name specified');
        }
        Ext.apply(me, {
            title: "Node '" + nodename + "'",
            hstateid: 'nodetab',
            tbar: [
                { xtype: 'button', text: 'Reboot', iconCls: 'fa fa-undo' },
                { xtype: 'button', text: 'Shutdown', iconCls: 'fa fa-power-off' },
                { xtype: 'splitbutton', text: 'Shell', iconCls: 'fa fa-terminal',
                    menu: [{ text: 'xterm.js' }] },
                { xtype: 'button', text: 'Bulk Actions', iconCls: 'fa fa-ellipsis-v',
                    menu: [{ text: 'Bulk Start' }, { text: 'Bulk Shutdown' }] },
            ],
        });
        me.items = [
            { itemId: 'summary', title: 'Summary', iconCls: 'fa fa-book' },
            { itemId: 'notes', title: 'Notes', iconCls: 'fa fa-sticky-note-o' },
            { itemId: 'shell', title: 'Shell', iconCls: 'fa fa-terminal' },
            { itemId: 'system', title: 'System', iconCls: 'fa fa-cogs' },
            { itemId: 'network', title: 'Network', iconCls: 'fa fa-exchange', groups: ['system'] },
            { itemId: 'dns', title: 'DNS', iconCls: 'fa fa-globe', groups: ['system'] },
            { itemId: 'tasks', title: 'Task History', iconCls: 'fa fa-list-alt' },
        ];
        me.callParent();
    },
});

// A minimal "workspace": the Datacenter view, or a node view when the hash's resource
// id is "=node/<name>" (as in #v1:0:=node%2Fpve2:4:=summary::::::).
PVE.StandIn.start = function () {
    var state = PVE.StandIn.readState();
    var rid = typeof state.rid === 'string' ? state.rid : '';
    var m = /^node\/(.+)$/.exec(rid);
    var main = m
        ? { xtype: 'pveNodeConfig', pveSelNode: { data: { id: rid, type: 'node', node: m[1] } } }
        : { xtype: 'pveDcConfig' };
    main.itemId = 'main';
    PVE.StandIn.viewport = Ext.create('Ext.container.Viewport', {
        layout: 'border',
        items: [{
            region: 'north',
            xtype: 'component',
            height: 34,
            style: { background: '#f5f5f5', 'border-bottom': '1px solid #cfcfcf' },
            html: '<div style="padding:8px 10px;font:bold 14px sans-serif">' +
                'pve-rebalancer test stand-in (not Proxmox code) &mdash; PVE ' +
                Ext.htmlEncode(PVE.StandIn.layout) + ' layout</div>',
        }, Ext.apply({ region: 'center' }, main)],
    });
    PVE.StandIn.main = PVE.StandIn.viewport.down('#main');
};
