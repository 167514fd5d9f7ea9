// Shared helpers for the browser tests: launching Debian's Chromium through
// playwright-core (never a downloaded browser), pages that collect errors, screenshots.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SCREENSHOT_DIR = path.resolve(here, '..', '..', 'target', 'screenshots');

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
}

// A fresh context + page; pageerror and console errors are collected in page.errors.
export async function newPage(browser, viewport = { width: 1280, height: 860 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.setDefaultNavigationTimeout(30_000);
  page.pageErrors = [];
  page.consoleErrors = [];
  page.on('pageerror', (e) => page.pageErrors.push(String(e && e.stack || e)));
  page.on('console', (m) => {
    if (m.type() === 'error') {
      page.consoleErrors.push(m.text());
    }
  });
  return page;
}

export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `pve-integration-${name}.png`);
  await page.screenshot({ path: file, timeout: 15_000 });
  return file;
}
