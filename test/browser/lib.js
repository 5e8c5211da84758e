// Helpers for the browser tests: psql against the tests' cluster
// (test/browser/run.sh exports BROWSER_TEST_PGHOST/PGPORT), the mock payment
// provider and shop-httpd serving web/ started per test file, Debian's
// Chromium through playwright-core (never a downloaded browser).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const PGHOST = process.env.BROWSER_TEST_PGHOST;
const PGPORT = process.env.BROWSER_TEST_PGPORT;
if (!PGHOST || !PGPORT) throw new Error('run through test/browser/run.sh (BROWSER_TEST_PGHOST/PGPORT unset)');
const ROOT = path.join(__dirname, '..', '..');
const BIN = process.env.SHOP_HTTPD || path.join(ROOT, 'src', 'http', 'shop-httpd');
const BASE_PORT = Number(process.env.SHOP_BROWSER_PORT || 18130);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// screenshots: git-ignored (test/browser/.gitignore); kept only in the
// source tree's copy the suite runs in unless SHOP_SCREENSHOT_DIR says where
const SHOTS = process.env.SHOP_SCREENSHOT_DIR || path.join(__dirname, 'screenshots');

const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'shop-browser-test-'));
const SECRET = crypto.randomBytes(32).toString('hex');
const secretFile = path.join(workdir, 'jwt-secret');
fs.writeFileSync(secretFile, SECRET + '\n', { mode: 0o600 });
const MOCK_SECRET = 'whsec_' + crypto.randomBytes(32).toString('base64');
const API_KEY = 'sk_test_browser_' + crypto.randomBytes(8).toString('hex');

function psql(sql) {
	const r = spawnSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', PGHOST, '-p', PGPORT,
		'-U', 'postgres', '-d', 'postgres', '-c', sql], { encoding: 'utf8' });
	if (r.status !== 0) throw new Error('psql failed: ' + r.stderr);
	return r.stdout.trim();
}

// The operator's token, minted as demo/mint_token.js does it.
function operatorToken(sub = 'olga') {
	const r = spawnSync('node', [path.join(ROOT, 'demo', 'mint_token.js'), '--secret-file', secretFile,
		'--role', 'shop_operator', '--sub', sub, '--ttl', '3600'], { encoding: 'utf8' });
	if (r.status !== 0) throw new Error('mint_token failed: ' + r.stderr);
	return r.stdout.trim();
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function waitUp(url, tries = 100) {
	for (let i = 0; i < tries; i++) {
		try { const r = await fetch(url); if (r.status < 500) return; } catch (e) { /* not yet */ }
		await sleep(50);
	}
	throw new Error(url + ' did not come up');
}

// A fresh catalogue, the mock provider (delivering its signed webhooks to
// shop-httpd's POST /webhooks/mock), shop-httpd with --static-dir web/, and
// a Chromium.  offset picks the ports (BASE_PORT + 2*offset, +1).
async function startStack(offset, { user = 'shop_authenticator' } = {}) {
	const hport = BASE_PORT + 2 * offset;
	const mport = hport + 1;
	const url = `http://127.0.0.1:${hport}`;
	const mock = spawn('node', [path.join(ROOT, 'demo', 'mock_provider.js'), '--port', String(mport),
		'--api-key', API_KEY, '--webhook-secret', MOCK_SECRET, '--webhook-url', `${url}/webhooks/mock`,
		'--max-lifetime', '600'], { stdio: ['pipe', 'ignore', 'inherit'] });
	psql(`SELECT shop.shop_set_provider('mock', 'mock', '${MOCK_SECRET}',
			'{"api_base": "http://127.0.0.1:${mport}"}');
		  SELECT shop.shop_set_provider_api_key('mock', '${API_KEY}') IS NOT NULL;`);
	const httpd = spawn(BIN, ['--db', `host=${PGHOST} port=${PGPORT} dbname=postgres user=${user}`,
		'--listen', `127.0.0.1:${hport}`, '--jwt-secret-file', secretFile, '--pool', '4',
		'--static-dir', path.join(ROOT, 'web')], { stdio: ['ignore', 'ignore', 'pipe'] });
	let log = '';
	httpd.stderr.on('data', (d) => { log += d.toString(); });
	await waitUp(`${url}/health`);
	await waitUp(`http://127.0.0.1:${mport}/_health`);
	const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
	fs.mkdirSync(SHOTS, { recursive: true });
	return {
		url, mockUrl: `http://127.0.0.1:${mport}`, browser, log: () => log,
		async shot(page, name) { await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true }); },
		async stop() {
			await browser.close().catch(() => {});
			httpd.kill('SIGTERM');
			mock.stdin.end();
			mock.kill('SIGTERM');
		},
	};
}

// A product with SKUs of the given stock; returns their ids.  Ids are
// per test file (base) so files never share rows.
function catalogue(base, skus) {
	const rows = skus.map((s, i) => `(${base + i}, ${base}, '${s.code}', ${s.on_hand})`).join(', ');
	psql(`INSERT INTO shop.product (id, name, price) VALUES (${base}, 'Test product ${base}', 10000);
		  INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES ${rows};`);
	return skus.map((_, i) => base + i);
}

module.exports = { psql, operatorToken, startStack, catalogue, sleep, SECRET, secretFile };
