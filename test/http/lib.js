// Helpers for shop-httpd's tests: the daemon (spawned per test file on its
// own port), tokens signed with the tests' secret, psql against the tests'
// cluster (test/http/run.sh exports HTTPD_TEST_PGHOST / HTTPD_TEST_PGPORT).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const PGHOST = process.env.HTTPD_TEST_PGHOST;
const PGPORT = process.env.HTTPD_TEST_PGPORT;
const BIN = process.env.SHOP_HTTPD || path.join(__dirname, '..', '..', 'src', 'http', 'shop-httpd');
const BASE_PORT = Number(process.env.SHOP_HTTP_PORT || 18110);
if (!PGHOST || !PGPORT) throw new Error('run through test/http/run.sh (HTTPD_TEST_PGHOST/PGPORT unset)');

const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'shop-httpd-test-'));
const SECRET = crypto.randomBytes(32).toString('hex');
const secretFile = path.join(workdir, 'jwt-secret');
fs.writeFileSync(secretFile, SECRET + '\n', { mode: 0o600 });

function psql(sql, db = 'postgres') {
	const r = spawnSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-h', PGHOST, '-p', PGPORT,
		'-U', 'postgres', '-d', db, '-c', sql], { encoding: 'utf8' });
	if (r.status !== 0) throw new Error('psql failed: ' + r.stderr);
	return r.stdout.trim();
}

function b64url(buf) { return Buffer.from(buf).toString('base64url'); }

// an HS256 token; header and secret can be overridden to forge
function sign(claims, { secret = SECRET, header = { alg: 'HS256', typ: 'JWT' } } = {}) {
	const h = b64url(JSON.stringify(header));
	const p = b64url(JSON.stringify(claims));
	const s = crypto.createHmac('sha256', secret).update(h + '.' + p).digest('base64url');
	return `${h}.${p}.${s}`;
}
const now = () => Math.floor(Date.now() / 1000);
const customer = (sub, extra = {}) => sign({ sub, role: 'fx_customer', exp: now() + 3600, ...extra });

const fixtureArgs = ['--schema', 'httpd_fixture', '--anon-role', 'fx_anon', '--user-role', 'fx_customer',
	'--webhook-role', 'fx_webhook'];

// Start shop-httpd on BASE_PORT + offset; resolves when /health answers.
async function startDaemon(offset, extra = [], { schema = fixtureArgs, user = 'fx_authenticator' } = {}) {
	const port = BASE_PORT + offset;
	const args = ['--db', `host=${PGHOST} port=${PGPORT} dbname=postgres user=${user}`,
		'--listen', `127.0.0.1:${port}`, '--jwt-secret-file', secretFile, ...schema, ...extra];
	const child = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
	let log = '';
	child.stderr.on('data', (d) => { log += d.toString(); });
	const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
	const url = `http://127.0.0.1:${port}`;
	let up = false;
	for (let i = 0; i < 200 && !up && child.exitCode === null && child.signalCode === null; i++) {
		try {
			const r = await fetch(url + '/health');
			up = r.status === 200 || r.status === 503;
		} catch (e) { /* not up yet */ }
		if (!up) await sleep(50);
	}
	if (!up) {
		child.kill('SIGKILL');
		throw new Error(`shop-httpd on port ${port} did not come up (exit ${child.exitCode}): ${log}`);
	}
	return {
		url, port, child, exited,
		log: () => log,
		async stop(signal = 'SIGTERM') {
			if (child.exitCode === null && child.signalCode === null) child.kill(signal);
			return exited;
		},
	};
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// A raw HTTP exchange over a socket (for what fetch normalises or refuses).
function raw(port, text, { timeout = 5000, end = false } = {}) {
	return new Promise((resolve) => {
		const s = net.connect(port, '127.0.0.1');
		let buf = '';
		const t = setTimeout(() => { s.destroy(); resolve({ status: 0, text: buf, timedOut: true }); }, timeout);
		s.on('data', (d) => { buf += d.toString('latin1'); });
		s.on('error', () => {});
		s.on('close', () => {
			clearTimeout(t);
			const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf);
			resolve({ status: m ? Number(m[1]) : 0, text: buf, closed: true });
		});
		if (end) s.end(text); else s.write(text);
	});
}

async function post(url, body, headers = {}) {
	const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });
	const text = await r.text();
	let json;
	try { json = JSON.parse(text); } catch (e) { json = undefined; }
	return { status: r.status, headers: r.headers, text, json };
}

module.exports = { psql, sign, customer, now, startDaemon, sleep, raw, post, SECRET, workdir, PGHOST, PGPORT, BIN, fixtureArgs };
