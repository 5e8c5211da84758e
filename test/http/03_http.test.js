// The HTTP boundary: methods, body and header limits, invalid JSON, slow
// clients, many concurrent connections, static files and traversal,
// /health, draining on SIGTERM.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { startDaemon, raw, post, sleep, psql, workdir, BIN } = require('./lib');

const www = path.join(workdir, 'www');
const files = {
	'index.html': ['<!doctype html><title>shop</title>', 'text/html; charset=utf-8'],
	'app.js': ['console.log(1)', 'text/javascript; charset=utf-8'],
	'style.css': ['body{}', 'text/css; charset=utf-8'],
	'data.json': ['{"a":1}', 'application/json'],
	'logo.svg': ['<svg xmlns="http://www.w3.org/2000/svg"/>', 'image/svg+xml'],
	'img.png': [Buffer.from('89504e470d0a1a0a', 'hex'), 'image/png'],
};
fs.mkdirSync(path.join(www, 'sub'), { recursive: true });
for (const [name, [body]] of Object.entries(files)) fs.writeFileSync(path.join(www, name), body);
fs.writeFileSync(path.join(workdir, 'outside.txt'), 'secret outside');
fs.symlinkSync(path.join(workdir, 'outside.txt'), path.join(www, 'escape.txt'));
fs.symlinkSync(path.join(workdir), path.join(www, 'updir'));
fs.symlinkSync(path.join(www, 'app.js'), path.join(www, 'alias.js'));
fs.chmodSync(workdir, 0o755);

let d;
test.before(async () => { d = await startDaemon(4, ['--static-dir', www, '--max-body', '65536', '--pool', '4']); });
test.after(async () => { assert.equal((await d.stop()).code, 0); });

test('/health → 200 {"database": "ok", "worker": false} (no outbox worker in this cluster)', async () => {
	const r = await fetch(d.url + '/health');
	assert.equal(r.status, 200);
	assert.deepEqual(await r.json(), { database: 'ok', worker: false });
	assert.equal((await fetch(d.url + '/health', { method: 'POST' })).status, 405);
});

test('wrong methods', async () => {
	for (const m of ['PUT', 'PATCH', 'DELETE']) {
		const r = await fetch(d.url + '/rpc/add_them', { method: m });
		assert.equal(r.status, 405, m);
		assert.equal((await r.json()).code, 'PGRST101');
	}
	assert.equal((await fetch(d.url + '/webhooks/mock')).status, 405);
	assert.equal((await fetch(d.url + '/nothing-here', { method: 'POST' })).status, 404);
	assert.equal((await fetch(d.url + '/rpc/')).status, 404);
	assert.equal((await fetch(d.url + '/rpc/a/b')).status, 404);
});

test('invalid JSON → 400 PGRST102; non-object JSON too; wrong content type → 415', async () => {
	for (const body of ['{', '[1,2]', '"x"', '42', 'null', '{"a":1,}', '\u0000', '{"a": 1} x']) {
		const r = await post(d.url + '/rpc/add_them', body);
		assert.equal(r.status, 400, JSON.stringify(body));
		assert.equal(r.json.code, 'PGRST102');
		assert.equal(r.json.message, 'Empty or invalid json');
	}
	const ct = await post(d.url + '/rpc/add_them', '{"a":1,"b":2}', { 'Content-Type': 'text/xml' });
	assert.equal(ct.status, 415);
	// an empty body is no arguments
	assert.equal((await post(d.url + '/rpc/nothing', '')).status, 204);
});

test('body over --max-body → 413, declared or chunked', async () => {
	const big = JSON.stringify({ items: 'x'.repeat(70000) });
	const r = await post(d.url + '/rpc/echo_json', big);
	assert.equal(r.status, 413);
	const chunked = await new Promise((resolve) => {
		const req = http.request(d.url + '/rpc/echo_json', { method: 'POST', headers: { 'Content-Type': 'application/json' } }, (res) => {
			res.resume();
			res.on('end', () => resolve(res.statusCode));
		});
		req.on('error', () => resolve(0));
		for (let i = 0; i < 10; i++) req.write('x'.repeat(10000));
		req.end();
	});
	assert.equal(chunked, 413);
	// just under the limit is fine
	const ok = await post(d.url + '/rpc/echo_json', JSON.stringify({ items: 'y'.repeat(60000) }));
	assert.equal(ok.status, 200);
	assert.equal(ok.json.length, 60000);
});

test('oversized request headers are refused, the daemon goes on', async () => {
	const r = await raw(d.port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100000)}\r\n\r\n`);
	assert.ok(r.status >= 400 || r.closed, `status ${r.status}`);
	assert.equal((await fetch(d.url + '/health')).status, 200);
});

test('static files with their content types; / is index.html', async () => {
	for (const [name, [body, type]] of Object.entries(files)) {
		const r = await fetch(d.url + '/' + name);
		assert.equal(r.status, 200, name);
		assert.equal(r.headers.get('content-type'), type, name);
		assert.deepEqual(Buffer.from(await r.arrayBuffer()), Buffer.from(body), name);
	}
	const root = await fetch(d.url + '/');
	assert.equal(root.status, 200);
	assert.equal(await root.text(), files['index.html'][0]);
	assert.equal((await fetch(d.url + '/alias.js')).status, 200);
});

test('traversal, symlinks out of the directory, missing files → 404', async () => {
	for (const p of ['/../outside.txt', '/sub/../../outside.txt', '/%2e%2e/outside.txt', '/..%2foutside.txt',
		'/escape.txt', '/updir/outside.txt', '/missing.html', '/sub', '/sub/', '/..', '/.%2e/']) {
		const r = await raw(d.port, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
		assert.equal(r.status, 404, p);
		assert.ok(!r.text.includes('secret outside'), p);
	}
});

test('200 concurrent connections all answered', async () => {
	const one = (i) => new Promise((resolve) => {
		const body = JSON.stringify({ a: i, b: 1 });
		const req = http.request(d.url + '/rpc/add_them', {
			method: 'POST', agent: false,
			headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
		}, (res) => {
			let t = '';
			res.on('data', (c) => { t += c; });
			res.on('end', () => resolve([res.statusCode, t]));
		});
		req.on('error', (e) => resolve([0, String(e)]));
		req.end(body);
	});
	const results = await Promise.all(Array.from({ length: 200 }, (_, i) => one(i)));
	results.forEach(([status, text], i) => {
		assert.equal(status, 200, `request ${i}: ${text}`);
		assert.equal(Number(text), i + 1);
	});
});

test('a slow client is disconnected after --timeout', async () => {
	const d2 = await startDaemon(5, ['--timeout', '1']);
	try {
		const t0 = Date.now();
		const r = await raw(d2.port, 'POST /rpc/add_them HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{"a":', { timeout: 8000 });
		assert.ok(r.closed, 'connection closed by the daemon');
		assert.ok(Date.now() - t0 < 6000, `closed after ${Date.now() - t0} ms`);
		// on a new connection (fetch's pooled keep-alive one was closed by the same timeout)
		const h = await raw(d2.port, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
		assert.equal(h.status, 200);
	} finally {
		assert.equal((await d2.stop()).code, 0);
	}
});

test('SIGTERM drains the requests in flight, then exits 0', async () => {
	const d3 = await startDaemon(6);
	const inflight = post(d3.url + '/rpc/sleepy', '{"ms": 3000}');
	// the signal goes once the request is in the database, not after a fixed
	// time (the files run one at a time: the only pg_sleep is this one)
	let running = false;
	for (let i = 0; i < 200 && !running; i++) {
		await sleep(50);
		running = psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") !== '0';
	}
	assert.ok(running, 'the request is running in the database');
	d3.child.kill('SIGTERM');
	const r = await inflight;
	assert.equal(r.status, 200);
	assert.equal(r.text, '3000');
	const exit = await d3.exited;
	assert.equal(exit.code, 0);
	await assert.rejects(fetch(d3.url + '/health'));
	assert.match(d3.log(), /draining 1 request/);
});

test('--help, and refusals at start: no secret, a short secret, a bad flag', () => {
	const env = { PATH: process.env.PATH };
	const help = spawnSync(BIN, ['--help'], { encoding: 'utf8', env });
	assert.equal(help.status, 0);
	for (const f of ['--db', '--listen', '--jwt-secret-file', '--pool', '--static-dir', '--schema', '--anon-role',
		'--user-role', '--webhook-role', '--max-body']) assert.ok(help.stdout.includes(f), f);
	assert.equal(spawnSync(BIN, [], { encoding: 'utf8', env }).status, 2);
	const short = path.join(workdir, 'short-secret');
	fs.writeFileSync(short, 'too short\n');
	const s = spawnSync(BIN, ['--jwt-secret-file', short], { encoding: 'utf8', env });
	assert.equal(s.status, 2);
	assert.match(s.stderr, /at least 32 bytes/);
	assert.equal(spawnSync(BIN, ['--no-such-flag'], { encoding: 'utf8', env }).status, 2);
});
