// Self-test of the mock payment provider (demo/mock_provider.js), without
// PostgreSQL: checkout sessions and their validation, idempotency as Stripe
// does it, the hosted page, signed events (verified with the reference
// standardwebhooks library), refunds, authentication and failure injection.
// Run: node --test demo/mock_provider.test.js   (after bash test/receiver/install.sh)
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const { Webhook } = require(path.join(__dirname, '..', 'test', 'receiver', 'node_modules', 'standardwebhooks'));

const apiKey = 'sk_test_selftest_' + crypto.randomBytes(6).toString('hex');
const secret = 'whsec_' + crypto.randomBytes(32).toString('base64');

// the fixed test clusters of this repository use 54329-54360: never hold one
async function startMock(args = []) {
	for (;;) {
		const m = await startMockOnce(args);
		if (m.port < 54329 || m.port > 54360) return m;
		m.child.kill('SIGTERM');
	}
}

function startMockOnce(args) {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [path.join(__dirname, 'mock_provider.js'), '--port', '0', ...args],
			{ stdio: ['pipe', 'pipe', 'pipe'] });
		let out = '';
		let err = '';
		child.stderr.on('data', (d) => { err += d; });
		child.stdout.on('data', (d) => {
			out += d;
			const m = /port=(\d+)\n/.exec(out);
			if (m) resolve({ child, port: Number(m[1]), out: () => out, err: () => err });
		});
		child.on('error', reject);
		child.on('exit', (code) => reject(new Error(`mock exited early (${code}): ${err}`)));
	});
}

function request(port, method, p, { body = '', headers = {}, timeoutMs = 5000 } = {}) {
	return new Promise((resolve) => {
		const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent: false }, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				const text = Buffer.concat(chunks).toString('utf8');
				let json = null;
				try { json = JSON.parse(text); } catch (e) { json = null; }
				resolve({ status: res.statusCode, headers: res.headers, body: text, json });
			});
			res.on('error', (e) => resolve({ error: e.code || e.message }));
		});
		req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
		req.on('error', (e) => resolve({ error: e.code || e.message }));
		req.end(body);
	});
}

const form = (o) => new URLSearchParams(o).toString();
const inHalfAnHour = () => Math.floor(Date.now() / 1000) + 31 * 60;

function checkoutForm(orderId, extra = {}) {
	return {
		mode: 'payment',
		'line_items[0][price_data][currency]': 'krw',
		'line_items[0][price_data][unit_amount]': '10000',
		'line_items[0][price_data][product_data][name]': 'Mug',
		'line_items[0][quantity]': '2',
		'line_items[1][price_data][currency]': 'krw',
		'line_items[1][price_data][unit_amount]': '2500',
		'line_items[1][price_data][product_data][name]': 'Spoon <steel> & "co"',
		'line_items[1][quantity]': '1',
		'metadata[order_id]': String(orderId),
		client_reference_id: String(orderId),
		success_url: 'https://shop.example/paid?session={CHECKOUT_SESSION_ID}',
		cancel_url: 'https://shop.example/cancelled',
		expires_at: String(inHalfAnHour()),
		...extra,
	};
}

let mock;
const call = (method, p, opts = {}) => request(mock.port, method, p, opts);
function post(p, params, { key = null, auth = `Bearer ${apiKey}`, ...rest } = {}) {
	const headers = { 'content-type': 'application/x-www-form-urlencoded' };
	if (auth !== null) headers.authorization = auth;
	if (key !== null) headers['idempotency-key'] = key;
	return call('POST', p, { body: form(params), headers, ...rest });
}
const get = (p, auth = `Bearer ${apiKey}`) => call('GET', p, { headers: auth ? { authorization: auth } : {} });
const ctl = async (method, p, value) => {
	const r = await call(method, p, value === undefined ? {}
		: { body: JSON.stringify(value), headers: { 'content-type': 'application/json' } });
	return r.json;
};
const state = () => ctl('GET', '/_state');

test.before(async () => {
	mock = await startMock(['--api-key', apiKey, '--webhook-secret', secret, '--max-lifetime', '120']);
});
test.after(() => {
	if (mock) mock.child.kill('SIGTERM');
});

test('prints its port; health answers', async () => {
	const h = await ctl('GET', '/_health');
	assert.equal(h.ok, true);
	assert.equal(h.port, mock.port);
	assert.doesNotMatch(mock.out(), /webhook_secret=/, 'a given secret is never printed');
});

test('creating a checkout session: Stripe\'s object; the same key again returns the first answer', async () => {
	const params = checkoutForm(101);
	const r = await post('/v1/checkout/sessions', params, { key: 'order-101-checkout' });
	assert.equal(r.status, 200, r.body);
	const s = r.json;
	assert.match(s.id, /^cs_mock_/);
	assert.equal(s.object, 'checkout.session');
	assert.equal(s.url, `http://127.0.0.1:${mock.port}/pay/${s.id}`);
	assert.equal(s.status, 'open');
	assert.equal(s.payment_status, 'unpaid');
	assert.equal(s.amount_total, 22500);
	assert.equal(s.currency, 'krw');
	assert.equal(s.expires_at, Number(params.expires_at));
	assert.deepEqual(s.metadata, { order_id: '101' });
	assert.equal(s.client_reference_id, '101');
	assert.equal(s.payment_intent, null);
	assert.match(r.headers['request-id'], /^req_mock_/);

	const again = await post('/v1/checkout/sessions', params, { key: 'order-101-checkout' });
	assert.equal(again.status, 200);
	assert.equal(again.body, r.body, 'the same body, byte for byte');
	assert.equal(again.headers['idempotent-replayed'], 'true');
	assert.equal(again.headers['original-request'], r.headers['request-id']);
	const st = await state();
	assert.equal(st.sessions.filter((x) => x.metadata.order_id === '101').length, 1, 'one session made');
	assert.deepEqual(st.sessions.find((x) => x.id === s.id).line_items, [
		{ name: 'Mug', currency: 'krw', unit_amount: 10000, quantity: 2 },
		{ name: 'Spoon <steel> & "co"', currency: 'krw', unit_amount: 2500, quantity: 1 }]);

	const other = await post('/v1/checkout/sessions', { ...params, 'line_items[0][quantity]': '3' },
		{ key: 'order-101-checkout' });
	assert.equal(other.status, 400);
	assert.equal(other.json.error.type, 'idempotency_error');
	const otherPath = await post('/v1/refunds', { payment_intent: 'pi_x' }, { key: 'order-101-checkout' });
	assert.equal(otherPath.status, 400);
	assert.equal(otherPath.json.error.type, 'idempotency_error');
	assert.equal((await state()).sessions.filter((x) => x.metadata.order_id === '101').length, 1);

	const got = await get(`/v1/checkout/sessions/${s.id}`);
	assert.equal(got.status, 200);
	assert.deepEqual(got.json, s);
	const li = await get(`/v1/checkout/sessions/${s.id}/line_items`);
	assert.deepEqual(li.json.data.map((x) => [x.description, x.quantity, x.amount_total]),
		[['Mug', 2, 20000], ['Spoon <steel> & "co"', 1, 2500]]);
	const none = await get('/v1/checkout/sessions/cs_mock_nope');
	assert.equal(none.status, 404);
	assert.equal(none.json.error.code, 'resource_missing');
});

test('validation like Stripe: 400 with the error object and param; nothing saved for the key', async () => {
	const cases = [
		[{ mode: undefined }, 'mode', /Missing required param: mode/],
		[{ mode: 'subscription' }, 'mode', /only mode=payment/],
		[{ 'line_items[0][price_data][unit_amount]': '12.5' }, 'line_items[0][price_data][unit_amount]', /Invalid integer: 12.5/],
		[{ 'line_items[0][price_data][unit_amount]': '-1' }, 'line_items[0][price_data][unit_amount]', /greater than or equal to 0/],
		[{ 'line_items[0][quantity]': '0' }, 'line_items[0][quantity]', /positive integer/],
		[{ 'line_items[1][price_data][currency]': 'usd' }, 'line_items[1][price_data][currency]', /same currency/],
		[{ 'line_items[0][price_data][product_data][name]': '' }, 'line_items[0][price_data][product_data][name]', /Missing required/],
		[{ 'line_items[0][price_data][product_data][name]': undefined }, 'line_items[0][price_data][product_data]', /Missing required/],
		[{ success_url: undefined }, 'success_url', /Missing required param: success_url/],
		[{ success_url: 'not a url' }, 'success_url', /Not a valid URL/],
		[{ expires_at: String(Math.floor(Date.now() / 1000) + 29 * 60) }, 'expires_at', /at least 30 minutes/],
		[{ expires_at: String(Math.floor(Date.now() / 1000) + 25 * 3600) }, 'expires_at', /less than 24 hours/],
		[{ expires_at: 'soon' }, 'expires_at', /Invalid integer/],
		[{ 'line_items[0][price_data][unit_ammount]': '1' }, 'line_items[0][price_data][unit_ammount]', /unknown parameter/],
		[{ metadat: 'x' }, 'metadat', /Received unknown parameter: metadat/],
	];
	for (const [change, param, message] of cases) {
		const params = checkoutForm(102, change);
		for (const k of Object.keys(params)) if (params[k] === undefined) delete params[k];
		const r = await post('/v1/checkout/sessions', params, { key: `bad-${param}` });
		assert.equal(r.status, 400, `${JSON.stringify(change)}: ${r.body}`);
		assert.equal(r.json.error.type, 'invalid_request_error');
		assert.equal(r.json.error.param, param, JSON.stringify(change));
		assert.match(r.json.error.message, message);
	}
	const noLines = await post('/v1/checkout/sessions', { mode: 'payment', success_url: 'https://x.example/' }, { key: 'no-lines' });
	assert.equal(noLines.status, 400);
	assert.equal(noLines.json.error.param, 'line_items');
	const gap = checkoutForm(102);
	for (const k of Object.keys(gap)) if (k.startsWith('line_items[1]')) gap[k.replace('[1]', '[2]')] = gap[k], delete gap[k];
	assert.equal((await post('/v1/checkout/sessions', gap, { key: 'gap' })).status, 400, 'line item indexes with a gap');
	const json = await call('POST', '/v1/checkout/sessions', { body: JSON.stringify({ mode: 'payment' }),
		headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' } });
	assert.equal(json.status, 400, 'a JSON body is refused: the API is form-encoded');
	// a refused request saved nothing: the corrected retry with the same key runs
	const fixed = await post('/v1/checkout/sessions', checkoutForm(102), { key: 'bad-mode' });
	assert.equal(fixed.status, 200, fixed.body);
	assert.equal((await state()).sessions.filter((x) => x.metadata.order_id === '102').length, 1);
});

test('authentication: Bearer with the right key; 401 otherwise, the key never in /_requests', async () => {
	const none = await post('/v1/checkout/sessions', checkoutForm(103), { key: 'auth-1', auth: null });
	assert.equal(none.status, 401);
	assert.equal(none.json.error.type, 'invalid_request_error');
	assert.match(none.json.error.message, /did not provide an API key/);
	const wrong = await post('/v1/checkout/sessions', checkoutForm(103), { key: 'auth-1', auth: 'Bearer sk_test_wrong_key_1234' });
	assert.equal(wrong.status, 401);
	assert.match(wrong.json.error.message, /Invalid API Key provided: .*1234$/);
	assert.doesNotMatch(wrong.body, /wrong_key/);
	const basic = await post('/v1/checkout/sessions', checkoutForm(103),
		{ key: 'auth-1', auth: 'Basic ' + Buffer.from(`${apiKey}:`).toString('base64') });
	assert.equal(basic.status, 200, 'Basic auth with the key as user name, as Stripe accepts (the 401s saved nothing)');
	const log = await ctl('GET', '/_requests?path=/v1/');
	assert.ok(log.length > 0);
	const text = JSON.stringify(log);
	assert.ok(!text.includes(apiKey), 'the API key is never shown');
	assert.ok(!text.includes(Buffer.from(`${apiKey}:`).toString('base64')));
	const last = log[log.length - 1];
	assert.equal(last.authorization, 'basic');
	assert.equal(last.auth_ok, true);
	assert.equal(last.headers.authorization, '[redacted]');
	assert.equal(last.idempotency_key, 'auth-1');
	assert.equal(last.form.metadata.order_id, '103');
	assert.equal(last.form.line_items[0].price_data.product_data.name, 'Mug');
});

test('POSTs without an Idempotency-Key are counted and logged with a null key', async () => {
	const before = (await state()).posts_without_idempotency_key;
	const r = await post('/v1/checkout/sessions', checkoutForm(104));
	assert.equal(r.status, 200);
	const twice = await post('/v1/checkout/sessions', checkoutForm(104));
	assert.notEqual(twice.json.id, r.json.id, 'without a key, a repeat makes a second session');
	assert.equal((await state()).posts_without_idempotency_key, before + 2);
	const log = await ctl('GET', '/_requests?path=/v1/checkout/sessions');
	assert.equal(log[log.length - 1].idempotency_key, null);
});

test('hosted page, pay: signed payment.succeeded, redirect; refunds: same key once, limits', async () => {
	const s = (await post('/v1/checkout/sessions', checkoutForm(105), { key: 'order-105-checkout' })).json;
	const page = await call('GET', `/pay/${s.id}`);
	assert.equal(page.status, 200);
	assert.match(page.headers['content-type'], /^text\/html/);
	assert.match(page.body, /Mug/);
	assert.match(page.body, /Spoon &lt;steel&gt; &amp; &quot;co&quot;/, 'names are escaped');
	assert.match(page.body, /22,500 KRW/);
	assert.match(page.body, new RegExp(`action="/pay/${s.id}/pay"`));
	assert.match(page.body, new RegExp(`action="/pay/${s.id}/cancel"`));
	assert.doesNotMatch(page.body, /(src|href)="(https?:)?\/\//, 'no external resources');

	const since = (await ctl('GET', '/_events')).length;
	const paid = await call('POST', `/pay/${s.id}/pay`);
	assert.equal(paid.status, 303);
	assert.equal(paid.headers.location, `https://shop.example/paid?session=${s.id}`);
	const after = (await get(`/v1/checkout/sessions/${s.id}`)).json;
	assert.equal(after.status, 'complete');
	assert.equal(after.payment_status, 'paid');
	assert.match(after.payment_intent, /^pi_mock_/);
	assert.equal(after.url, null);
	const again = await call('POST', `/pay/${s.id}/pay`);
	assert.equal(again.status, 400, 'a complete session cannot be paid again');

	const evs = (await ctl('GET', `/_events?since=${since}`));
	assert.equal(evs.length, 1);
	const ev = evs[0];
	assert.equal(ev.type, 'payment.succeeded');
	const verified = new Webhook(secret).verify(ev.body, ev.headers);
	assert.deepEqual(verified.data, { order_id: '105', amount: 22500, currency: 'KRW', payment_id: after.payment_intent,
		session_id: s.id });
	assert.equal(verified.type, 'payment.succeeded');
	assert.equal(ev.headers['webhook-id'], ev.id);
	assert.throws(() => new Webhook('whsec_' + crypto.randomBytes(32).toString('base64')).verify(ev.body, ev.headers));
	const fresh = (await ctl('GET', `/_events?since=${since}&fresh=1`))[0];
	assert.equal(fresh.body, ev.body);
	new Webhook(secret).verify(fresh.body, fresh.headers);

	const expire = await post(`/v1/checkout/sessions/${s.id}/expire`, {}, { key: 'expire-105' });
	assert.equal(expire.status, 400);
	assert.match(expire.json.error.message, /You can only expire sessions that are open/);

	const pi = after.payment_intent;
	const refund = { payment_intent: pi, amount: '5000', 'metadata[order_id]': '105', 'metadata[refund_id]': '1' };
	const r1 = await post('/v1/refunds', refund, { key: 'refund-1' });
	assert.equal(r1.status, 200, r1.body);
	assert.match(r1.json.id, /^re_mock_/);
	assert.equal(r1.json.object, 'refund');
	assert.equal(r1.json.status, 'succeeded');
	assert.equal(r1.json.amount, 5000);
	assert.equal(r1.json.currency, 'krw');
	assert.equal(r1.json.payment_intent, pi);
	assert.deepEqual(r1.json.metadata, { order_id: '105', refund_id: '1' });
	const r1again = await post('/v1/refunds', refund, { key: 'refund-1' });
	assert.equal(r1again.body, r1.body);
	assert.equal(r1again.headers['idempotent-replayed'], 'true');
	assert.equal((await state()).refunds.filter((x) => x.payment_intent === pi).length, 1, 'one refund for the key');

	const tooMuch = await post('/v1/refunds', { payment_intent: pi, amount: '17501' }, { key: 'refund-2' });
	assert.equal(tooMuch.status, 400);
	assert.equal(tooMuch.json.error.type, 'invalid_request_error');
	assert.match(tooMuch.json.error.message, /greater than unrefunded amount/);
	const rest = await post('/v1/refunds', { payment_intent: pi }, { key: 'refund-3' });
	assert.equal(rest.status, 200);
	assert.equal(rest.json.amount, 17500, 'without amount: the rest');
	const done = await post('/v1/refunds', { payment_intent: pi, amount: '1' }, { key: 'refund-4' });
	assert.equal(done.status, 400);
	assert.match(done.json.error.message, /already been refunded/);
	const unknown = await post('/v1/refunds', { payment_intent: 'pi_mock_nope' }, { key: 'refund-5' });
	assert.equal(unknown.status, 400);
	assert.equal(unknown.json.error.code, 'resource_missing');
	assert.equal(unknown.json.error.param, 'payment_intent');
	const badReason = await post('/v1/refunds', { payment_intent: pi, reason: 'customer changed mind' }, { key: 'refund-6' });
	assert.equal(badReason.status, 400);
	assert.equal(badReason.json.error.param, 'reason');
	const st = await state();
	assert.deepEqual(st.refunds.filter((x) => x.payment_intent === pi).map((x) => x.amount), [5000, 17500]);
	assert.equal(st.payments.find((x) => x.id === pi).amount_refunded, 22500);
	assert.equal((await get(`/v1/refunds/${r1.json.id}`)).json.amount, 5000);
	assert.equal((await get(`/v1/payment_intents/${pi}`)).json.status, 'succeeded');
});

test('cancel and expire: payment.cancelled, session expired, redirect to cancel_url', async () => {
	const s = (await post('/v1/checkout/sessions', checkoutForm(106), { key: 'order-106-checkout' })).json;
	const since = (await ctl('GET', '/_events')).length;
	const c = await call('POST', `/pay/${s.id}/cancel`);
	assert.equal(c.status, 303);
	assert.equal(c.headers.location, 'https://shop.example/cancelled');
	assert.equal((await get(`/v1/checkout/sessions/${s.id}`)).json.status, 'expired');
	const evs = await ctl('GET', `/_events?since=${since}`);
	assert.deepEqual(evs.map((e) => e.type), ['payment.cancelled']);
	assert.deepEqual(new Webhook(secret).verify(evs[0].body, evs[0].headers).data,
		{ order_id: '106', amount: 22500, currency: 'KRW', payment_id: null, session_id: s.id });
	assert.equal((await ctl('POST', '/_pay', { session_id: s.id })).error !== undefined, true, 'an expired session cannot be paid');

	const s2 = (await post('/v1/checkout/sessions', checkoutForm(107), { key: 'order-107-checkout' })).json;
	const e = await post(`/v1/checkout/sessions/${s2.id}/expire`, {}, { key: 'expire-107' });
	assert.equal(e.status, 200);
	assert.equal(e.json.status, 'expired');
	const e2 = await post(`/v1/checkout/sessions/${s2.id}/expire`, {}, { key: 'expire-107' });
	assert.equal(e2.status, 200, 'the same key replays the first answer');
	const e3 = await post(`/v1/checkout/sessions/${s2.id}/expire`, {}, { key: 'expire-107-b' });
	assert.equal(e3.status, 400);
});

test('POST /_pay pays like the button; refunds of its payment', async () => {
	const s = (await post('/v1/checkout/sessions', checkoutForm(108), { key: 'order-108-checkout' })).json;
	const r = await ctl('POST', '/_pay', { session_id: s.id });
	assert.equal(r.session.status, 'complete');
	assert.equal(r.event.type, 'payment.succeeded');
	assert.equal(JSON.parse(r.event.body).data.payment_id, r.session.payment_intent);
});

test('failure injection: refuse, status (Retry-After, raw body), hang, process-then-fail, slow and 409', async () => {
	const s = (await post('/v1/checkout/sessions', checkoutForm(109), { key: 'order-109-checkout' })).json;
	await ctl('POST', '/_pay', { session_id: s.id });
	const pi = (await get(`/v1/checkout/sessions/${s.id}`)).json.payment_intent;
	const count = async () => (await state()).refunds.filter((x) => x.payment_intent === pi).length;
	const refund = (amount) => ({ payment_intent: pi, amount: String(amount) });

	await ctl('POST', '/_fail', { path: '/v1/refunds', mode: 'refuse' });
	const refused = await post('/v1/refunds', refund(100), { key: 'f-1' });
	assert.ok(refused.error, `refused: ${JSON.stringify(refused)}`);
	assert.equal(await count(), 0, 'a refused request never reached the API');
	const ok1 = await post('/v1/refunds', refund(100), { key: 'f-1' });
	assert.equal(ok1.status, 200, 'the rule was used once; the retry runs');
	assert.equal(ok1.headers['idempotent-replayed'], undefined);

	await ctl('POST', '/_fail', { path: '/v1/refunds', mode: 'status', status: 429, retry_after: 2, times: 2 });
	const limited = await post('/v1/refunds', refund(200), { key: 'f-2' });
	assert.equal(limited.status, 429);
	assert.equal(limited.headers['retry-after'], '2');
	assert.equal(limited.json.error.code, 'rate_limit');
	assert.equal((await post('/v1/refunds', refund(200), { key: 'f-2' })).status, 429, 'times: 2');
	assert.equal((await post('/v1/refunds', refund(200), { key: 'f-2' })).status, 200);
	assert.equal(await count(), 2);

	await ctl('POST', '/_fail', { path: '/v1/refunds', mode: 'status', status: 500, body: 'not json {' });
	const junk = await post('/v1/refunds', refund(300), { key: 'f-3' });
	assert.equal(junk.status, 500);
	assert.equal(junk.body, 'not json {');
	await ctl('POST', '/_fail', { path: '/v1/refunds', mode: 'status', status: 400, message: 'Card declined (mock)' });
	const declined = await post('/v1/refunds', refund(300), { key: 'f-3' });
	assert.equal(declined.status, 400);
	assert.equal(declined.json.error.message, 'Card declined (mock)');

	await ctl('POST', '/_fail', { path: '/v1/refunds', mode: 'hang' });
	const hung = await post('/v1/refunds', refund(400), { key: 'f-4', timeoutMs: 500 });
	assert.equal(hung.error, 'TIMEOUT');
	assert.equal(await count(), 2, 'a hung request (without process) did nothing');

	// the provider acted, the answer was lost: the retry gets the saved answer
	await ctl('POST', '/_fail', { path: '/v1/refunds', mode: 'hang', process: true });
	const lost = await post('/v1/refunds', refund(500), { key: 'f-5', timeoutMs: 500 });
	assert.equal(lost.error, 'TIMEOUT');
	assert.equal(await count(), 3, 'the refund was made');
	const retried = await post('/v1/refunds', refund(500), { key: 'f-5' });
	assert.equal(retried.status, 200);
	assert.equal(retried.headers['idempotent-replayed'], 'true');
	assert.equal(await count(), 3, 'and not made twice');

	await ctl('POST', '/_fail', { path: '/v1/refunds', mode: 'status', status: 500, process: true });
	assert.equal((await post('/v1/refunds', refund(600), { key: 'f-6' })).status, 500);
	assert.equal((await post('/v1/refunds', refund(600), { key: 'f-6' })).status, 200);
	assert.equal(await count(), 4);

	// slow, executing after the delay: a concurrent retry with the key is 409
	// (the retry is sent once the first is held, not after a fixed time)
	await ctl('POST', '/_fail', { path: '/v1/refunds', mode: 'slow', delay_ms: 3000, process: false });
	const slow = post('/v1/refunds', refund(700), { key: 'f-7', timeoutMs: 10000 });
	let held = false;
	for (let i = 0; i < 200 && !held; i++) {
		await new Promise((r) => setTimeout(r, 25));
		held = (await ctl('GET', '/_requests?path=/v1/refunds'))
			.some((e) => e.idempotency_key === 'f-7' && e.failure === 'slow');
	}
	assert.ok(held, 'the first request with the key is held');
	const concurrent = await post('/v1/refunds', refund(700), { key: 'f-7' });
	assert.equal(concurrent.status, 409);
	assert.equal(concurrent.json.error.type, 'idempotency_error');
	assert.equal((await slow).status, 200);
	assert.equal(await count(), 5);

	const log = await ctl('GET', '/_requests?path=/v1/refunds');
	const answers = log.filter((e) => e.idempotency_key === 'f-5').map((e) => [e.answer, e.failure, e.replayed]);
	assert.deepEqual(answers, [['hung', 'hang', false], [200, null, true]]);
	assert.equal(log.filter((e) => e.idempotency_key === 'f-1')[0].answer, 'refused');
	assert.deepEqual(await ctl('POST', '/_fail', { clear: true }), { rules: [] });
});

// ---- Toss Payments (the shop's toss kind)
const basic = (key) => `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
function tossPost(p, value, { key = null, auth = basic(apiKey) } = {}) {
	const headers = { 'content-type': 'application/json' };
	if (auth !== null) headers.authorization = auth;
	if (key !== null) headers['idempotency-key'] = key;
	return call('POST', p, { body: JSON.stringify(value), headers });
}
const tossPayment = async (key) => (await ctl('GET', '/_toss/state')).payments.find((x) => x.paymentKey === key);

test('toss: confirm captures once; the same key replays, another body is refused; Basic auth only', async () => {
	const x = await ctl('POST', '/_toss/authorize', { orderId: 'shop-order-901', amount: 15000 });
	assert.equal(x.status, 'IN_PROGRESS');
	const body = { paymentKey: x.paymentKey, orderId: 'shop-order-901', amount: 15000 };
	assert.equal((await tossPost('/v1/payments/confirm', body, { auth: `Bearer ${apiKey}` })).json.code, 'UNAUTHORIZED_KEY');
	assert.equal((await tossPost('/v1/payments/confirm', body, { auth: basic('test_sk_wrong') })).status, 401);
	const r = await tossPost('/v1/payments/confirm', body, { key: 'c-901' });
	assert.equal(r.status, 200, r.body);
	assert.equal(r.json.status, 'DONE');
	assert.equal(r.json.totalAmount, 15000);
	assert.equal(r.json.currency, 'KRW');
	assert.equal(r.json.orderId, 'shop-order-901');
	const again = await tossPost('/v1/payments/confirm', body, { key: 'c-901' });
	assert.equal(again.status, 200);
	assert.equal(again.body, r.body, 'the same answer');
	const other = await tossPost('/v1/payments/confirm', { ...body, amount: 1 }, { key: 'c-901' });
	assert.equal(other.status, 422);
	assert.equal(other.json.code, 'IDEMPOTENCY_KEY_REUSED');
	const later = await tossPost('/v1/payments/confirm', body, { key: 'c-901-b' });
	assert.equal(later.status, 400);
	assert.equal(later.json.code, 'ALREADY_PROCESSED_PAYMENT');
	assert.equal((await tossPayment(x.paymentKey)).captures, 1);
	const fetched = await get(`/v1/payments/${x.paymentKey}`, basic(apiKey));
	assert.equal(fetched.json.status, 'DONE');
	assert.equal((await get('/v1/payments/tgen_nosuch', basic(apiKey))).json.code, 'NOT_FOUND_PAYMENT');
	const events = await ctl('GET', '/_toss/events');
	const mine = events.filter((e) => JSON.parse(e.body).data.paymentKey === x.paymentKey);
	assert.equal(mine.length, 1, 'one PAYMENT_STATUS_CHANGED for the capture');
	assert.equal(JSON.parse(mine[0].body).eventType, 'PAYMENT_STATUS_CHANGED');
});

test('toss: refusals (amount, unknown key, rejected card) and cancels (part, then the rest)', async () => {
	const x = await ctl('POST', '/_toss/authorize', { orderId: 'shop-order-902', amount: 10000 });
	const wrong = await tossPost('/v1/payments/confirm', { paymentKey: x.paymentKey, orderId: 'shop-order-902', amount: 9000 });
	assert.equal(wrong.status, 400);
	assert.equal(wrong.json.code, 'INVALID_REQUEST');
	const unknown = await tossPost('/v1/payments/confirm', { paymentKey: 'tgen_none', orderId: 'shop-order-902', amount: 10000 });
	assert.equal(unknown.status, 404);
	assert.equal(unknown.json.code, 'NOT_FOUND_PAYMENT_SESSION');
	const y = await ctl('POST', '/_toss/authorize', { orderId: 'shop-order-903', amount: 10000, reject: 'REJECT_CARD_PAYMENT' });
	const rejected = await tossPost('/v1/payments/confirm', { paymentKey: y.paymentKey, orderId: 'shop-order-903', amount: 10000 });
	assert.equal(rejected.status, 403);
	assert.equal(rejected.json.code, 'REJECT_CARD_PAYMENT');
	assert.equal((await tossPayment(y.paymentKey)).status, 'ABORTED');

	const notYet = await tossPost(`/v1/payments/${x.paymentKey}/cancel`, { cancelReason: 'r' });
	assert.equal(notYet.json.code, 'NOT_CANCELABLE_PAYMENT');
	await tossPost('/v1/payments/confirm', { paymentKey: x.paymentKey, orderId: 'shop-order-902', amount: 10000 });
	const part = await tossPost(`/v1/payments/${x.paymentKey}/cancel`, { cancelReason: 'r', cancelAmount: 4000 }, { key: 'refund-1' });
	assert.equal(part.json.status, 'PARTIAL_CANCELED');
	assert.equal(part.json.balanceAmount, 6000);
	assert.equal((await tossPost(`/v1/payments/${x.paymentKey}/cancel`, { cancelReason: 'r', cancelAmount: 4000 }, { key: 'refund-1' })).body,
		part.body, 'a retried cancel replays');
	assert.equal((await tossPost(`/v1/payments/${x.paymentKey}/cancel`, { cancelReason: 'r', cancelAmount: 7000 })).json.code,
		'NOT_CANCELABLE_AMOUNT');
	const rest = await tossPost(`/v1/payments/${x.paymentKey}/cancel`, { cancelReason: 'r' }, { key: 'refund-2' });
	assert.equal(rest.json.status, 'CANCELED');
	assert.equal(rest.json.cancels.length, 2);
	assert.equal(rest.json.cancels[1].cancelAmount, 6000);
});

test('toss: the widget redirects to the success URL with paymentKey, orderId and amount', async () => {
	const page = await call('GET', '/toss/widget?orderId=shop-order-904&amount=2500&successUrl=' + encodeURIComponent('https://shop.example/ok?x=1'));
	assert.equal(page.status, 200);
	assert.match(page.body, /2,500 KRW/);
	const paid = await call('POST', '/toss/widget/pay', { body: form({ orderId: 'shop-order-904', amount: '2500',
		successUrl: 'https://shop.example/ok?x=1' }), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
	assert.equal(paid.status, 303);
	const to = new URL(paid.headers.location);
	assert.equal(to.origin + to.pathname, 'https://shop.example/ok');
	assert.equal(to.searchParams.get('x'), '1');
	assert.equal(to.searchParams.get('orderId'), 'shop-order-904');
	assert.equal(to.searchParams.get('amount'), '2500');
	assert.equal((await tossPayment(to.searchParams.get('paymentKey'))).status, 'IN_PROGRESS');
	const cancelled = await call('POST', '/toss/widget/cancel', { body: form({ orderId: 'shop-order-904', amount: '2500',
		successUrl: 'https://shop.example/ok', failUrl: 'https://shop.example/fail' }),
	headers: { 'content-type': 'application/x-www-form-urlencoded' } });
	assert.equal(new URL(cancelled.headers.location).searchParams.get('code'), 'PAY_PROCESS_CANCELED');
});

test('stops when stdin closes', async () => {
	const m = await startMock(['--api-key', apiKey]);
	assert.match(m.out(), /webhook_secret=whsec_/, 'a generated secret is printed');
	const exited = new Promise((resolve) => m.child.on('exit', (code) => resolve(code)));
	m.child.stdin.end();
	assert.equal(await exited, 0);
});
