// POST /webhooks/<provider>: a real event signed with shop.shop_sign_mock for
// a `mock` provider is recorded (200), a forged one is refused (400) and
// leaves nothing behind; the body reaches the database byte for byte.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startDaemon, psql } = require('./lib');

let d;
const provider = 'mock_httpd';
test.before(async () => {
	const secret = 'whsec_' + crypto.randomBytes(32).toString('base64');
	psql(`SELECT shop.shop_set_provider('${provider}', 'mock', '${secret}')`);
	d = await startDaemon(7);
});
test.after(async () => { assert.equal((await d.stop()).code, 0); });

// headers for body signed by the database (the mock provider's secret never leaves it)
function signed(eventId, body) {
	const b64 = Buffer.from(body, 'utf8').toString('base64');
	return JSON.parse(psql(`SELECT shop.shop_sign_mock('${provider}', '${eventId}', convert_from(decode('${b64}', 'base64'), 'UTF8'))`));
}
const logged = (eventId) => Number(psql(`SELECT count(*) FROM shop.payment_log WHERE provider = '${provider}' AND event_id = '${eventId}'`));
const send = (p, headers, body) => fetch(d.url + '/webhooks/' + p, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });

test('a signed event → 200 with the function\'s JSON, recorded once; again → duplicate', async () => {
	// odd spacing, non-ASCII and a trailing newline: the signature covers these exact bytes
	const body = '{"type":  "payment.succeeded", "data": {"order_id": "987654321", "amount": 1000, "currency": "KRW", "note": "h\u00e9llo \u2713"}}\n';
	const h = signed('evt_ok_1', body);
	const r = await send(provider, h, body);
	assert.equal(r.status, 200);
	const j = await r.json();
	assert.equal(j.result, 'unmatched');
	assert.equal(j.event_id, 'evt_ok_1');
	assert.equal(logged('evt_ok_1'), 1);
	assert.equal(psql(`SELECT payload ->> 'type' FROM shop.payment_log WHERE provider = '${provider}' AND event_id = 'evt_ok_1'`), 'payment.succeeded');
	const again = await send(provider, h, body);
	assert.equal(again.status, 200);
	assert.equal((await again.json()).result, 'duplicate');
	assert.equal(logged('evt_ok_1'), 1);
});

test('header names in any case', async () => {
	const body = '{"type": "payment.failed", "data": {"order_id": "1"}}';
	const h = signed('evt_case', body);
	const upper = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toUpperCase(), v]));
	const r = await send(provider, upper, body);
	assert.equal(r.status, 200);
	assert.equal(logged('evt_case'), 1);
});

test('forged events → 400 and nothing recorded', async () => {
	const body = '{"type": "payment.succeeded", "data": {"order_id": "5", "amount": 1, "currency": "KRW"}}';
	const h = signed('evt_forged', body);
	const cases = [
		['tampered body', h, body.replace('"amount": 1', '"amount": 9'), 'SH011'],
		['re-serialised body', h, JSON.stringify(JSON.parse(body)), 'SH011'],
		['wrong signature', { ...h, 'webhook-signature': 'v1,' + crypto.randomBytes(32).toString('base64') }, body, 'SH011'],
		['no signature headers', {}, body, 'SH013'],
		['stale timestamp', { ...h, 'webhook-timestamp': String(Math.floor(Date.now() / 1000) - 3600) }, body, 'SH011'],
	];
	for (const [name, headers, b, code] of cases) {
		const r = await send(provider, headers, b);
		assert.equal(r.status, 400, name);
		const j = await r.json();
		assert.equal(j.code, code, name);
	}
	assert.equal(logged('evt_forged'), 0);
	const unknown = await send('no_such_provider', h, body);
	assert.equal(unknown.status, 400);
	assert.equal((await unknown.json()).code, 'SH010');
	const nul = await send(provider, h, 'a\u0000b');
	assert.equal(nul.status, 400);
	assert.equal(logged('evt_forged'), 0);
});

test('the webhook role cannot call the RPC functions and RPC roles cannot call handle_webhook', async () => {
	const r = await fetch(d.url + '/rpc/handle_webhook', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ provider, headers: {}, body: '{}' }) });
	assert.equal(r.status, 401);
	assert.equal((await r.json()).code, '42501');
});

test('any other database error → 500 (here: a webhook role without EXECUTE); nothing recorded', async () => {
	const d2 = await startDaemon(11, ['--webhook-role', 'fx_anon']);
	try {
		const body = '{"type": "payment.succeeded", "data": {"order_id": "1"}}';
		const r = await fetch(d2.url + '/webhooks/' + provider, { method: 'POST', headers: { 'Content-Type': 'application/json', ...signed('evt_500', body) }, body });
		assert.equal(r.status, 500);
		assert.equal((await r.json()).code, '42501');
		assert.equal(logged('evt_500'), 0);
	} finally {
		assert.equal((await d2.stop()).code, 0);
	}
});
