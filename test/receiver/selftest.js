// Self-test of the test receiver, without PostgreSQL: signs requests with the
// reference library's own sign() and checks every behaviour and the control
// API.  Run: node --test test/receiver/selftest.js  (after install.sh)
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const { Webhook } = require('standardwebhooks');

const secret = 'whsec_' + crypto.randomBytes(32).toString('base64');
const otherSecret = 'whsec_' + crypto.randomBytes(32).toString('base64');

function startReceiver(args = []) {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [path.join(__dirname, 'receiver.js'), '0', ...args],
			{ stdio: ['pipe', 'pipe', 'inherit'] });
		let out = '';
		child.stdout.on('data', (d) => {
			out += d;
			const m = /port=(\d+)\n/.exec(out);
			if (m) resolve({ child, port: Number(m[1]) });
		});
		child.on('error', reject);
		child.on('exit', (code) => reject(new Error(`receiver exited early (${code})`)));
	});
}

// one request; resolves {status, headers, body} or {error}
function request(port, method, p, { body = '', headers = {}, timeoutMs = 5000 } = {}) {
	return new Promise((resolve) => {
		const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent: false }, (res) => {
			let size = 0;
			const chunks = [];
			res.on('data', (c) => {
				size += c.length;
				if (chunks.length < 4) chunks.push(c);
			});
			res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, size,
				body: Buffer.concat(chunks).toString('utf8') }));
			res.on('error', (e) => resolve({ error: e.code || e.message }));
		});
		req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
		req.on('error', (e) => resolve({ error: e.code || e.message }));
		req.end(body);
	});
}

function signed(id, payload, key = secret) {
	const body = JSON.stringify(payload);
	const ts = new Date();
	const sig = new Webhook(key).sign(id, ts, body);
	return {
		body,
		headers: {
			'content-type': 'application/json',
			'webhook-id': id,
			'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)),
			'webhook-signature': sig,
		},
	};
}

const event = (n, type = 'order.created') =>
	({ id: `evt_${n}`, type, created_at: new Date().toISOString(), data: { order: { id: 100 + n, status: 'PENDING' } } });

async function json(port, method, p, value) {
	const r = await request(port, method, p, value === undefined ? {} : { body: JSON.stringify(value) });
	return { status: r.status, value: JSON.parse(r.body) };
}

test('receiver', async (t) => {
	const { child, port } = await startReceiver();
	t.after(() => child.kill());

	const paths = ['/ok/a', '/slow/300/a', '/status/500/a', '/status/302/a', '/retry-after/2/a', '/retry-after-date/3/a', '/huge/5000000/a',
		'/reset/a', '/hang/a', '/first/2/status/503/a', '/first/1/hang/a'];
	for (const p of paths) {
		const r = await json(port, 'POST', '/_secret', { path: p, secret });
		assert.equal(r.status, 200);
	}
	assert.equal((await json(port, 'POST', '/_secret', { path: '/ok/a', secret: 'not base64 !' })).status, 400);

	await t.test('200, verified with the reference library', async () => {
		const r = await request(port, 'POST', '/ok/a', signed('evt_1', event(1)));
		assert.equal(r.status, 200);
		const log = (await json(port, 'GET', '/_log?path=/ok/a')).value;
		assert.equal(log.length, 1);
		assert.equal(log[0].verified, true);
		assert.equal(log[0].webhook_id, 'evt_1');
		assert.equal(log[0].type, 'order.created');
		assert.equal(log[0].order_id, 101);
		assert.equal(log[0].attempt, 1);
		assert.equal(log[0].answer, 200);
	});

	await t.test('a bad signature, a changed body, a stale timestamp, no secret: not verified', async () => {
		const s = signed('evt_2', event(2), otherSecret);
		await request(port, 'POST', '/ok/a', s);
		const changed = signed('evt_3', event(3));
		changed.body = changed.body.replace('order.created', 'order.paid');
		await request(port, 'POST', '/ok/a', changed);
		const old = signed('evt_4', event(4));
		const ts = new Date(Date.now() - 3600 * 1000);
		old.headers['webhook-timestamp'] = String(Math.floor(ts.getTime() / 1000));
		old.headers['webhook-signature'] = new Webhook(secret).sign('evt_4', ts, old.body);
		await request(port, 'POST', '/ok/a', old);
		await request(port, 'POST', '/ok/unregistered', signed('evt_5', event(5)));
		const log = (await json(port, 'GET', '/_log?since=1')).value;
		assert.deepEqual(log.map((e) => e.verified), [false, false, false, false]);
		assert.match(log[0].verify_error, /No matching signature/);
		assert.match(log[2].verify_error, /too old/);
		assert.match(log[3].verify_error, /no secret/);
	});

	await t.test('rotation: any registered secret verifies; several v1 signatures accepted', async () => {
		await json(port, 'POST', '/_secret', { path: '/ok/a', secret: otherSecret });
		const s = signed('evt_6', event(6), otherSecret);
		const s2 = new Webhook(secret).sign('evt_6', new Date(Number(s.headers['webhook-timestamp']) * 1000), s.body);
		s.headers['webhook-signature'] = `${s2} ${s.headers['webhook-signature']}`;
		await request(port, 'POST', '/ok/a', s);
		const log = (await json(port, 'GET', '/_log?path=/ok/a')).value;
		assert.equal(log.at(-1).verified, true);
		await json(port, 'POST', '/_secret', { path: '/ok/a', secret, replace: true });
	});

	await t.test('slow', async () => {
		const t0 = Date.now();
		const r = await request(port, 'POST', '/slow/300/a', signed('evt_7', event(7)));
		assert.equal(r.status, 200);
		assert.ok(Date.now() - t0 >= 280);
	});

	await t.test('500, 302 with Location, 429 with Retry-After', async () => {
		assert.equal((await request(port, 'POST', '/status/500/a', signed('evt_8', event(8)))).status, 500);
		const r302 = await request(port, 'POST', '/status/302/a', signed('evt_8', event(8)));
		assert.equal(r302.status, 302);
		assert.equal(r302.headers.location, '/ok/redirected');
		const r = await request(port, 'POST', '/retry-after/2/a', signed('evt_8', event(8)));
		assert.equal(r.status, 429);
		assert.equal(r.headers['retry-after'], '2');
		// an HTTP date has whole seconds: 3 s after the answer, cut to the second
		const t0 = Date.now();
		const rd = await request(port, 'POST', '/retry-after-date/3/a', signed('evt_8', event(8)));
		const t1 = Date.now();
		assert.equal(rd.status, 429);
		const when = Date.parse(rd.headers['retry-after']);
		assert.match(rd.headers['retry-after'], /GMT$/);
		const sec = (t) => Math.floor(t / 1000) * 1000;
		assert.ok(when >= sec(t0 + 3000) && when <= sec(t1 + 3000), `${rd.headers['retry-after']} (sent between ${t0} and ${t1})`);
	});

	await t.test('huge body, and a client that stops reading', async () => {
		const r = await request(port, 'POST', '/huge/5000000/a', signed('evt_9', event(9)));
		assert.equal(r.status, 200);
		assert.equal(r.size, 5000000);
		// abort after the first chunk: the receiver must stop writing and survive
		await new Promise((resolve) => {
			const s = signed('evt_9', event(9));
			const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/huge/5000000/a',
				headers: s.headers, agent: false }, (res) => res.once('data', () => { req.destroy(); resolve(); }));
			req.end(s.body);
		});
		const c = await request(port, 'POST', '/huge-chunked/3000000/a', signed('evt_9', event(9)));
		assert.equal(c.status, 200);
		assert.equal(c.size, 3000000);
		assert.equal(c.headers['transfer-encoding'], 'chunked');
		const h = await json(port, 'GET', '/_health');
		assert.equal(h.value.ok, true);
		const log = (await json(port, 'GET', '/_log?path=/huge/5000000/a')).value;
		assert.equal(log.length, 2);
		assert.equal(log[1].attempt, 2);
	});

	await t.test('reset', async () => {
		const r = await request(port, 'POST', '/reset/a', signed('evt_10', event(10)));
		assert.ok(r.error === 'ECONNRESET' || r.error === 'socket hang up', `got ${JSON.stringify(r)}`);
		const log = (await json(port, 'GET', '/_log?path=/reset/a')).value;
		assert.equal(log[0].answer, 'reset');
		assert.equal(log[0].verified, true);
	});

	await t.test('hang', async () => {
		const r = await request(port, 'POST', '/hang/a', { ...signed('evt_11', event(11)), timeoutMs: 500 });
		assert.equal(r.error, 'TIMEOUT');
		const log = (await json(port, 'GET', '/_log?path=/hang/a')).value;
		assert.equal(log[0].answer, 'hang');
	});

	await t.test('first N deliveries of an id fail, then success; counted per id', async () => {
		const codes = [];
		for (let i = 0; i < 3; i++) codes.push((await request(port, 'POST', '/first/2/status/503/a', signed('evt_12', event(12)))).status);
		codes.push((await request(port, 'POST', '/first/2/status/503/a', signed('evt_13', event(13)))).status);
		assert.deepEqual(codes, [503, 503, 200, 503]);
		const log = (await json(port, 'GET', '/_log?path=/first/2/status/503/a')).value;
		assert.deepEqual(log.map((e) => e.attempt), [1, 2, 1 + 2, 1]);
		const h1 = await request(port, 'POST', '/first/1/hang/a', { ...signed('evt_14', event(14)), timeoutMs: 300 });
		assert.equal(h1.error, 'TIMEOUT');
		assert.equal((await request(port, 'POST', '/first/1/hang/a', signed('evt_14', event(14)))).status, 200);
	});

	await t.test('mode override, unknown paths, stats, clear', async () => {
		assert.equal((await json(port, 'POST', '/_mode', { path: '/ok/a', mode: '/status/500' })).status, 200);
		assert.equal((await request(port, 'POST', '/ok/a', signed('evt_15', event(15)))).status, 500);
		assert.equal((await json(port, 'POST', '/_mode', { path: '/ok/a', mode: '/nonsense' })).status, 400);
		await json(port, 'POST', '/_mode', { path: '/ok/a', mode: null });
		assert.equal((await request(port, 'POST', '/ok/a', signed('evt_15', event(15)))).status, 200);
		assert.equal((await request(port, 'POST', '/nothing/here', signed('evt_16', event(16)))).status, 404);
		const stats = (await json(port, 'GET', '/_stats')).value;
		assert.equal(stats.by_path['/ok/a'].unique, 6);
		assert.ok(stats.deliveries > stats.unique);
		await json(port, 'POST', '/_clear');
		assert.equal((await json(port, 'GET', '/_stats')).value.deliveries, 0);
	});
});

test('the receiver exits when its stdin closes', async () => {
	const { child } = await startReceiver();
	const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
	child.stdin.end();
	assert.equal(await exited, 0);
});

test('the receiver exits after --max-lifetime', async () => {
	const { child } = await startReceiver(['--max-lifetime', '1']);
	const t0 = Date.now();
	const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c)));
	assert.equal(code, 0);
	assert.ok(Date.now() - t0 < 3000);
});

test('POST /_quit stops it', async () => {
	const { child, port } = await startReceiver();
	const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
	assert.equal((await json(port, 'POST', '/_quit')).value.bye, true);
	assert.equal(await exited, 0);
});
