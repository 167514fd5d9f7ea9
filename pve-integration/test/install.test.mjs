// Tests for install.sh on temporary copies of a fixture template.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCRIPT = path.resolve(here, '..', 'install.sh');
const FIXTURE = fs.readFileSync(path.join(here, 'fixtures', 'index.html.tpl'));
const LINE = '<script type="text/javascript" src="/pve2/js/pve-rebalancer/pve-rebalancer.js"></script>';
const T = { timeout: 30_000 };

// Runs install.sh with POSIX sh (dash on Debian), never touching the real template.
function run(args, env = {}) {
  const r = spawnSync('sh', [SCRIPT, ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, PVE_INDEX_TEMPLATE: '/nonexistent/must-not-be-used.tpl', ...env },
  });
  assert.equal(r.error, undefined, String(r.error));
  return r;
}

function tempTemplate(content = FIXTURE) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pve-reb-install-'));
  const file = path.join(dir, 'index.html.tpl');
  fs.writeFileSync(file, content);
  return { dir, file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

const countLines = (s) => s.split('\n').filter((l) => l.includes('pve-rebalancer.js')).length;

test('install.sh add twice inserts exactly one line, right after pvemanagerlib.js', T, () => {
  const t = tempTemplate();
  try {
    const r1 = run(['add', t.file]);
    assert.equal(r1.status, 0, r1.stderr);
    const r2 = run(['add', t.file]);
    assert.equal(r2.status, 0, r2.stderr);
    assert.match(r2.stdout, /already installed/);
    const text = fs.readFileSync(t.file, 'utf8');
    assert.equal(countLines(text), 1);
    const lines = text.split('\n');
    const anchor = lines.findIndex((l) => l.includes('pvemanagerlib.js'));
    assert.equal(lines[anchor + 1], `    ${LINE}`, 'same indentation as the anchor');
    assert.equal(lines.length, FIXTURE.toString().split('\n').length + 1);
    // Everything else is unchanged.
    lines.splice(anchor + 1, 1);
    assert.equal(lines.join('\n'), FIXTURE.toString());
  } finally {
    t.cleanup();
  }
});

test('install.sh remove leaves the file byte-identical; remove again is a no-op', T, () => {
  const t = tempTemplate();
  try {
    assert.equal(run(['add', t.file]).status, 0);
    const r = run(['remove', t.file]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(fs.readFileSync(t.file).equals(FIXTURE), 'byte-identical after remove');
    const r2 = run(['remove', t.file]);
    assert.equal(r2.status, 0, r2.stderr);
    assert.match(r2.stdout, /nothing to do/);
    assert.ok(fs.readFileSync(t.file).equals(FIXTURE));
    assert.deepEqual(fs.readdirSync(t.dir), ['index.html.tpl'], 'no temp files left');
  } finally {
    t.cleanup();
  }
});

test('install.sh status reports the state with its exit code', T, () => {
  const t = tempTemplate();
  try {
    let r = run(['status', t.file]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^not installed/);
    run(['add', t.file]);
    r = run(['status', t.file]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^installed/);
  } finally {
    t.cleanup();
  }
});

test('install.sh without the anchor line fails clearly and changes nothing', T, () => {
  const content = Buffer.from(FIXTURE.toString().replace(/.*pvemanagerlib\.js.*\n/, ''));
  const t = tempTemplate(content);
  try {
    const old = new Date('2020-01-02T03:04:05Z');
    fs.utimesSync(t.file, old, old);
    const r = run(['add', t.file]);
    assert.equal(r.status, 4);
    assert.match(r.stderr, /pvemanagerlib\.js/);
    assert.match(r.stderr, /nothing changed/);
    assert.ok(fs.readFileSync(t.file).equals(content), 'content unchanged');
    assert.equal(fs.statSync(t.file).mtimeMs, old.getTime(), 'not rewritten');
    assert.deepEqual(fs.readdirSync(t.dir), ['index.html.tpl'], 'no temp files left');
  } finally {
    t.cleanup();
  }
});

test('install.sh keeps mode and owner, and replaces the file atomically (new inode)', T, () => {
  const t = tempTemplate();
  try {
    fs.chmodSync(t.file, 0o640);
    if (process.getuid() === 0) {
      fs.chownSync(t.file, 4321, 4322); // as root, check a foreign owner survives too
    }
    const before = fs.statSync(t.file);
    assert.equal(run(['add', t.file]).status, 0);
    const after = fs.statSync(t.file);
    assert.equal(after.mode & 0o7777, 0o640);
    assert.equal(after.uid, before.uid);
    assert.equal(after.gid, before.gid);
    assert.notEqual(after.ino, before.ino, 'written via temp file + rename');
    assert.equal(run(['remove', t.file]).status, 0);
    assert.equal(fs.statSync(t.file).mode & 0o7777, 0o640);
  } finally {
    t.cleanup();
  }
});

test('install.sh takes the template from PVE_INDEX_TEMPLATE', T, () => {
  const t = tempTemplate();
  try {
    const r = spawnSync('sh', [SCRIPT, 'add'], {
      encoding: 'utf8', timeout: 20_000, env: { ...process.env, PVE_INDEX_TEMPLATE: t.file },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(countLines(fs.readFileSync(t.file, 'utf8')), 1);
  } finally {
    t.cleanup();
  }
});

test('install.sh round-trips CRLF files and files without a final newline', T, () => {
  const variants = {
    crlf: Buffer.from(FIXTURE.toString().replace(/\n/g, '\r\n')),
    noFinalNewline: Buffer.from(FIXTURE.toString().replace(/\n$/, '')),
    anchorIsLastLine: Buffer.from('<html>\n<script src="/pve2/js/pvemanagerlib.js"></script>'),
  };
  for (const [name, content] of Object.entries(variants)) {
    const t = tempTemplate(content);
    try {
      assert.equal(run(['add', t.file]).status, 0, name);
      const text = fs.readFileSync(t.file, 'utf8');
      assert.equal(countLines(text), 1, name);
      if (name === 'crlf') {
        assert.ok(text.includes(`${LINE}\r\n`), 'inserted line ends in CRLF too');
      }
      assert.equal(run(['remove', t.file]).status, 0, name);
      assert.ok(fs.readFileSync(t.file).equals(content), `${name}: byte-identical after remove`);
    } finally {
      t.cleanup();
    }
  }
});

test('install.sh errors: missing template, bad usage', T, () => {
  let r = run(['add', '/nonexistent/dir/index.html.tpl']);
  assert.equal(r.status, 3);
  assert.match(r.stderr, /not found/);
  r = run(['frobnicate']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /usage/);
  r = run([]);
  assert.equal(r.status, 2);
});
