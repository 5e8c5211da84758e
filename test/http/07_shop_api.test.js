// The client suite against the SQL side's shop_api schema (when the
// extension has it): the storefront's calls through the real PostgREST
// client, with the default roles shop_anon / shop_customer / shop_webhook.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { PostgrestClient } = require('@supabase/postgrest-js');
const { startDaemon, psql, sign, now } = require('./lib');

const present = psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'shop_api'") === '1';
const opts = { skip: present ? false : 'no shop_api schema in this build of the extension' };

let d;
let skuA;
let skuB;
const user = (sub) => new PostgrestClient(d.url, { headers: { Authorization: 'Bearer ' + sign({ sub, role: 'shop_customer', exp: now() + 3600 }) } });

test.before(async () => {
	if (!present) return;
	psql(`DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_anon') THEN CREATE ROLE shop_anon NOLOGIN; END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_customer') THEN CREATE ROLE shop_customer NOLOGIN; END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_webhook') THEN CREATE ROLE shop_webhook NOLOGIN; END IF;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_authenticator') THEN CREATE ROLE shop_authenticator LOGIN NOINHERIT; END IF;
	END $$;
	GRANT shop_anon, shop_customer, shop_webhook TO shop_authenticator;
	SELECT shop.shop_api_grant('shop_anon', 'shop_customer', 'shop_webhook');
	INSERT INTO shop.product (id, name, price) VALUES (900001, 'HTTP test A', 1500), (900002, 'HTTP test B', 2500) ON CONFLICT DO NOTHING;
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (900001, 900001, 'HTTP-A', 100), (900002, 900002, 'HTTP-B', 2) ON CONFLICT DO NOTHING;`);
	skuA = 900001;
	skuB = 900002;
	d = await startDaemon(10, [], { schema: [], user: 'shop_authenticator' });
});
test.after(async () => { if (d) assert.equal((await d.stop()).code, 0); });

test('products() anonymously → an array of catalogue rows', opts, async () => {
	const r = await new PostgrestClient(d.url).rpc('products');
	assert.equal(r.error, null, JSON.stringify(r.error));
	assert.ok(Array.isArray(r.data));
	const a = r.data.find((p) => p.sku_id === skuA);
	assert.ok(a, 'test SKU listed');
	for (const k of ['product_id', 'product_name', 'sku_id', 'sku_code', 'price', 'currency', 'available']) assert.ok(k in a, k);
});

test('cart() without a token → 401 (42501: the anonymous role may not); a token without sub → 401 (PT401)', opts, async () => {
	const r = await new PostgrestClient(d.url).rpc('cart');
	assert.equal(r.status, 401);
	assert.equal(r.error.code, '42501');
	const nosub = new PostgrestClient(d.url, { headers: { Authorization: 'Bearer ' + sign({ role: 'shop_customer', exp: now() + 60 }) } });
	const r2 = await nosub.rpc('cart');
	assert.equal(r2.status, 401);
	assert.equal(r2.error.code, 'PT401');
});

test('a guest shops: cart_add, cart, cart_set_qty, cart_remove', opts, async () => {
	const { token } = await (await fetch(d.url + '/auth/guest', { method: 'POST' })).json();
	const g = new PostgrestClient(d.url, { headers: { Authorization: 'Bearer ' + token } });
	const add = await g.rpc('cart_add', { sku_id: skuA, qty: 2 });
	assert.equal(add.error, null, JSON.stringify(add.error));
	assert.equal(add.data.sku_id, skuA);
	assert.equal(add.data.qty, 2);
	const cart = await g.rpc('cart');
	assert.equal(cart.error, null);
	assert.equal(cart.data.length, 1);
	assert.equal(cart.data[0].qty, 2);
	assert.equal((await g.rpc('cart_set_qty', { sku_id: skuA, qty: 3 })).data.qty, 3);
	assert.equal((await g.rpc('cart_add', { sku_id: skuB, qty: 1 })).error, null);
	assert.equal((await g.rpc('cart_remove', { sku_id: skuB })).data, true);
	assert.equal((await g.rpc('cart')).data.length, 1);
});

test('guest cart merged after login; order, orders, order, cancel', opts, async () => {
	const { token } = await (await fetch(d.url + '/auth/guest', { method: 'POST' })).json();
	const guestSub = JSON.parse(Buffer.from(token.split('.')[1], 'base64url')).sub;
	const g = new PostgrestClient(d.url, { headers: { Authorization: 'Bearer ' + token } });
	assert.equal((await g.rpc('cart_add', { sku_id: skuA, qty: 1 })).error, null);
	const u = user('user-' + crypto.randomUUID());
	const merged = await u.rpc('cart_merge', { guest_sub: guestSub });
	assert.equal(merged.error, null, JSON.stringify(merged.error));
	assert.equal(typeof merged.data, 'number');
	assert.equal((await u.rpc('cart')).data.length, 1);
	const key = crypto.randomUUID();
	const o = await u.rpc('create_order', { idempotency_key: key });
	assert.equal(o.error, null, JSON.stringify(o.error));
	assert.equal(o.data.status, 'PENDING');
	for (const k of ['id', 'status', 'amount', 'currency', 'expires_at']) assert.ok(k in o.data, k);
	assert.equal((await u.rpc('create_order', { idempotency_key: key })).data.id, o.data.id);
	const list = await u.rpc('orders');
	assert.ok(list.data.some((x) => x.order_id === o.data.id));
	const one = await u.rpc('order', { order_id: o.data.id });
	assert.equal(one.error, null);
	assert.equal(typeof one.data, 'object');
	// another user's order: 404 (PT404), exactly as a missing one, nothing shown
	const other = await user('someone-else').rpc('order', { order_id: o.data.id });
	assert.equal(other.data, null);
	assert.equal(other.status, 404, JSON.stringify(other.error));
	assert.equal(other.error.code, 'PT404');
	const missing = await u.rpc('order', { order_id: 999999999 });
	assert.equal(missing.status, 404);
	assert.equal(missing.error.code, 'PT404');
	assert.equal(missing.error.message, other.error.message.replace(String(o.data.id), '999999999'));
	const cancelOther = await user('someone-else').rpc('cancel_order', { order_id: o.data.id });
	assert.equal(cancelOther.status, 404);
	const c = await u.rpc('cancel_order', { order_id: o.data.id });
	assert.equal(c.error, null);
	assert.equal(c.data.status, 'CANCELLED');
});

test('buy_now, and too little stock is a client error', opts, async () => {
	const u = user('buyer-' + crypto.randomUUID());
	const r = await u.rpc('buy_now', { items: [{ sku_id: skuA, qty: 1 }] });
	assert.equal(r.error, null, JSON.stringify(r.error));
	assert.equal(r.data.status, 'PENDING');
	const none = await u.rpc('buy_now', { items: [{ sku_id: skuB, qty: 50 }] });
	assert.ok(none.status >= 400 && none.status < 500, String(none.status));
	assert.equal(none.data, null);
	// GET for the STABLE readers (the quick start's GET /rpc/orders), 405 for the VOLATILE ones
	const viaGet = await u.rpc('orders', {}, { get: true });
	assert.equal(viaGet.status, 200);
	assert.ok(viaGet.data.some((x) => x.order_id === r.data.id));
	assert.equal((await u.rpc('order', { order_id: r.data.id }, { get: true })).data.order_id, r.data.id);
	assert.equal((await u.rpc('buy_now', { items: '[]' }, { get: true })).status, 405);
	const missing = await u.rpc('buy_now', {});
	assert.equal(missing.status, 404);
	assert.equal(missing.error.code, 'PGRST202');
});

test('webhooks through shop_api.handle_webhook under shop_webhook: signed → 200 recorded, forged → 400', opts, async () => {
	const secret = 'whsec_' + crypto.randomBytes(32).toString('base64');
	psql(`SELECT shop.shop_set_provider('mock_api', 'mock', '${secret}')`);
	const body = '{"type": "payment.succeeded", "data": {"order_id": "424242", "amount": 100, "currency": "KRW"}}';
	const h = JSON.parse(psql(`SELECT shop.shop_sign_mock('mock_api', 'evt_api_1', '${body}')`));
	const ok = await fetch(d.url + '/webhooks/mock_api', { method: 'POST', headers: { 'Content-Type': 'application/json', ...h }, body });
	assert.equal(ok.status, 200);
	assert.equal((await ok.json()).result, 'unmatched');
	const forged = await fetch(d.url + '/webhooks/mock_api', { method: 'POST', headers: { 'Content-Type': 'application/json', ...h }, body: body.replace('100', '1') });
	assert.equal(forged.status, 400);
	assert.equal((await forged.json()).code, 'SH011');
	assert.equal(psql("SELECT count(*) FROM shop.payment_log WHERE provider = 'mock_api'"), '1');
});

test('current_user_id, health, start_payment and confirm_payment through the client', opts, async () => {
	const sub = 'user-' + crypto.randomUUID();
	const u = user(sub);
	const me = await u.rpc('current_user_id');
	assert.equal(me.error, null, JSON.stringify(me.error));
	assert.equal(me.data, sub);
	// health: anon may ask; this cluster does not preload shop, so no worker
	const h = await new PostgrestClient(d.url).rpc('health');
	assert.equal(h.error, null, JSON.stringify(h.error));
	assert.deepEqual(h.data, { worker: false });
	// payments: own order only (PT404 → 404 for another user's), the core's
	// refusals as 400 with their SQLSTATE
	const order = await u.rpc('buy_now', { items: [{ sku_id: skuA, qty: 1 }], idempotency_key: 'pay-' + sub });
	assert.equal(order.error, null, JSON.stringify(order.error));
	const other = user('other-' + crypto.randomUUID());
	const foreign = await other.rpc('start_payment', { order_id: order.data.id, provider: 'nope', success_url: 'https://a.example/ok', cancel_url: 'https://a.example/no' });
	assert.equal(foreign.status, 404);
	assert.equal(foreign.error.code, 'PT404');
	const unknown = await u.rpc('start_payment', { order_id: order.data.id, provider: 'no-such-provider', success_url: 'https://a.example/ok', cancel_url: 'https://a.example/no' });
	assert.equal(unknown.status, 400);
	assert.equal(unknown.error.code, 'SH010');
	const foreignConfirm = await other.rpc('confirm_payment', { order_id: order.data.id, provider: 'nope', payment_key: 'pk_1', amount: 1500 });
	assert.equal(foreignConfirm.status, 404);
	assert.equal(foreignConfirm.error.code, 'PT404');
	const badAmount = await u.rpc('confirm_payment', { order_id: order.data.id, provider: 'no-such-provider', payment_key: 'pk_1', amount: 1 });
	assert.equal(badAmount.status, 400);
	assert.equal(badAmount.error.code, 'SH010');
	assert.equal((await u.rpc('cancel_order', { order_id: order.data.id })).data.status, 'CANCELLED');
});

test('confirm_free: an order with nothing to pay is PAID without a provider; a checkout for it (SH018) and a free confirm of an order with an amount (SH017) are refused', opts, async () => {
	psql(`INSERT INTO shop.product (id, name, price) VALUES (900003, 'HTTP test free sample', 0) ON CONFLICT DO NOTHING;
	INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (900003, 900003, 'HTTP-FREE', 10) ON CONFLICT DO NOTHING;
	SELECT shop.shop_set_provider('mock_free', 'mock', 'whsec_' || encode(convert_to('http free order test secret', 'UTF8'), 'base64'));`);
	const u = user('free-' + crypto.randomUUID());
	const o = await u.rpc('buy_now', { items: [{ sku_id: 900003, qty: 1 }] });
	assert.equal(o.error, null, JSON.stringify(o.error));
	assert.equal(o.data.amount, 0);
	// no provider takes a payment of 0: nothing is sent
	const start = await u.rpc('start_payment', { order_id: o.data.id, provider: 'mock_free', success_url: 'https://a.example/ok', cancel_url: 'https://a.example/no' });
	assert.equal(start.status, 400, JSON.stringify(start.error));
	assert.equal(start.error.code, 'SH018');
	assert.equal(psql(`SELECT count(*) FROM shop.payment_session WHERE order_id = ${o.data.id}`), '0');
	// another user's order: 404, nothing changes
	const foreign = await user('other-' + crypto.randomUUID()).rpc('confirm_free', { order_id: o.data.id });
	assert.equal(foreign.status, 404);
	assert.equal(foreign.error.code, 'PT404');
	assert.equal(psql(`SELECT status FROM shop.orders WHERE id = ${o.data.id}`), 'PENDING');
	const paid = await u.rpc('confirm_free', { order_id: o.data.id });
	assert.equal(paid.error, null, JSON.stringify(paid.error));
	assert.equal(paid.data.status, 'PAID');
	assert.equal(paid.data.amount, 0);
	assert.equal((await u.rpc('confirm_free', { order_id: o.data.id })).data.status, 'PAID', 'the same call again: unchanged');
	assert.equal(psql(`SELECT string_agg(state, ',') FROM shop.stock_reservation WHERE order_id = ${o.data.id}`), 'consumed');
	// an order with an amount stays PENDING
	const priced = await u.rpc('buy_now', { items: [{ sku_id: skuA, qty: 1 }] });
	const refused = await u.rpc('confirm_free', { order_id: priced.data.id });
	assert.equal(refused.status, 400, JSON.stringify(refused.error));
	assert.equal(refused.error.code, 'SH017');
	assert.equal(psql(`SELECT status FROM shop.orders WHERE id = ${priced.data.id}`), 'PENDING');
	assert.equal((await u.rpc('cancel_order', { order_id: priced.data.id })).data.status, 'CANCELLED');
});
