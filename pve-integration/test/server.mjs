// Static file server for the browser tests: loopback only, random port.
//   /                                  -> standin/index.html
//   /standin/*                         -> standin/
//   /pve2/ext6/*                       -> node_modules/extjs-gpl/build/ (ExtJS 6.2 GPL)
//   /pve2/js/pve-rebalancer/pve-rebalancer.js -> ../pve-rebalancer.js (the file under test)
//   /pve2/js/pve-rebalancer/frontend.js       -> fake-frontend/frontend.js
//   /pve2/js/pve-rebalancer/frontend_bg.wasm  -> an empty but valid wasm module
// Everything else is 404. Request counts per path are kept in `hits`.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const EXT_BUILD = path.join(here, 'node_modules', 'extjs-gpl', 'build');

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'application/javascript',
  '.mjs': 'application/javascript',
  '.css': 'text/css',
  '.png': 'image/png',
  '.gif': 'image/gif',
  '.svg': 'image/svg+xml',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.eot': 'application/vnd.ms-fontobject',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

// "\0asm" + version 1: the smallest valid module.
const EMPTY_WASM = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);

// Resolves `rel` inside `root`, refusing anything that escapes it.
function inside(root, rel) {
  const p = path.resolve(root, '.' + path.posix.normalize('/' + rel));
  return p === root || p.startsWith(root + path.sep) ? p : null;
}

function route(pathname) {
  if (pathname === '/' || pathname === '/index.html') {
    return path.join(here, 'standin', 'index.html');
  }
  const fixed = {
    '/pve2/js/pve-rebalancer/pve-rebalancer.js': path.join(here, '..', 'pve-rebalancer.js'),
    '/pve2/js/pve-rebalancer/frontend.js': path.join(here, 'fake-frontend', 'frontend.js'),
  };
  if (fixed[pathname]) {
    return fixed[pathname];
  }
  if (pathname.startsWith('/standin/')) {
    return inside(path.join(here, 'standin'), pathname.slice('/standin/'.length));
  }
  if (pathname.startsWith('/pve2/ext6/')) {
    return inside(EXT_BUILD, pathname.slice('/pve2/ext6/'.length));
  }
  return null;
}

export function startServer() {
  const hits = new Map();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const key = url.pathname + url.search;
    hits.set(key, (hits.get(key) || 0) + 1);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (url.pathname === '/favicon.ico') { // keeps the console free of 404s
      res.writeHead(204).end();
      return;
    }
    if (url.pathname === '/pve2/js/pve-rebalancer/frontend_bg.wasm') {
      res.writeHead(200, { 'Content-Type': 'application/wasm', 'Cache-Control': 'no-store' });
      res.end(EMPTY_WASM);
      return;
    }
    const file = route(url.pathname);
    if (!file) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    fs.readFile(file, (err, data) => {
      if (err) {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
        return;
      }
      const type = MIME[path.extname(file).toLowerCase()] || 'application/octet-stream';
      // ExtJS may be cached by the browser; our files must not be.
      const cache = file.startsWith(EXT_BUILD) ? 'max-age=3600' : 'no-store';
      res.writeHead(200, { 'Content-Type': type, 'Cache-Control': cache });
      res.end(req.method === 'HEAD' ? undefined : data);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        base: `http://127.0.0.1:${port}`,
        hits,
        close: () => new Promise((r) => {
          server.closeAllConnections?.();
          server.close(() => r());
        }),
      });
    });
  });
}
