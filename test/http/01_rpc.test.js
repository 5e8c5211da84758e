// RPC through the real PostgREST client (@supabase/postgrest-js) against the
// fixture schema: result shapes, errors, statuses, GET vs POST, the
// request-scoped settings a function sees.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { PostgrestClient } = require('@supabase/postgrest-js');
const { startDaemon, customer, post } = require('./lib');

let d;
let anon;
let alice;
test.before(async () => {
	d = await startDaemon(1);
	anon = new PostgrestClient(d.url);
	alice = new PostgrestClient(d.url, { headers: { Authorization: 'Bearer ' + customer('alice') } });
});
test.after(async () => { const r = await d.stop(); assert.equal(r.code, 0); });

test('scalar function → the JSON scalar', async () => {
	const r = await anon.rpc('add_them', { a: 1, b: 2 });
	assert.equal(r.error, null);
	assert.equal(r.status, 200);
	assert.equal(r.data, 3);
});

test('text scalar, an argument with a default omitted and given', async () => {
	assert.equal((await anon.rpc('greet', { name: 'bob' })).data, 'hello, bob');
	assert.equal((await anon.rpc('greet', { name: 'bob', greeting: 'hi' })).data, 'hi, bob');
});

test('single composite → object, SETOF composite / TABLE / SETOF scalar → arrays', async () => {
	assert.deepEqual((await anon.rpc('one_pair', { id: 5 })).data, { id: 5, label: 'label 5' });
	assert.deepEqual((await anon.rpc('pairs', { n: 2 })).data, [{ id: 1, label: 'label 1' }, { id: 2, label: 'label 2' }]);
	assert.deepEqual((await anon.rpc('squares', { n: 3 })).data, [{ i: 1, sq: 1 }, { i: 2, sq: 4 }, { i: 3, sq: 9 }]);
	assert.deepEqual((await anon.rpc('ints', { n: 3 })).data, [1, 2, 3]);
	assert.deepEqual((await anon.rpc('pairs', { n: 0 })).data, []);
});

test('void → 204 without a body; jsonb in and out; bigint beyond 2^53 kept exact in the body', async () => {
	const v = await anon.rpc('nothing');
	assert.equal(v.error, null);
	assert.equal(v.status, 204);
	assert.equal(v.data, null);
	const raw204 = await post(d.url + '/rpc/nothing', '{}');
	assert.equal(raw204.text, '');
	assert.equal(raw204.headers.get('content-type'), null);
	assert.deepEqual((await anon.rpc('echo_json', { items: [{ sku: 1, qty: 2 }] })).data, [{ sku: 1, qty: 2 }]);
	const big = await post(d.url + '/rpc/big', '{"n": 9007199254740993}');
	assert.equal(big.status, 200);
	assert.equal(big.text, '9007199254740993');
	// PostgREST converts a string argument too
	assert.equal((await anon.rpc('add_them', { a: '40', b: 2 })).data, 42);
});

test('GET for stable/immutable functions; volatile via GET → 405', async () => {
	const r = await anon.rpc('add_them', { a: 2, b: 5 }, { get: true });
	assert.equal(r.data, 7);
	const g = await anon.rpc('pairs', { n: 1 }, { get: true });
	assert.deepEqual(g.data, [{ id: 1, label: 'label 1' }]);
	const v = await anon.rpc('bump', {}, { get: true });
	assert.equal(v.status, 405);
	assert.equal(v.error.code, '25006');
	const p = await anon.rpc('bump');
	assert.equal(p.status, 200);
	assert.equal(typeof p.data, 'number');
});

test('GET runs read-only, POST read-write; role, claims, headers, method, path as set_config', async () => {
	const g = await alice.rpc('whoami', {}, { get: true }).setHeader('X-Trace', 'abc');
	assert.equal(g.error, null);
	assert.equal(g.data.role, 'fx_customer');
	assert.equal(g.data.claims.sub, 'alice');
	assert.equal(g.data.method, 'GET');
	assert.equal(g.data.path, '/rpc/whoami');
	assert.equal(g.data.read_only, 'on');
	assert.equal(g.data.headers['x-trace'], 'abc');
	assert.match(g.data.headers.authorization, /^Bearer /);
	const p = await anon.rpc('whoami');
	assert.equal(p.data.role, 'fx_anon');
	assert.deepEqual(p.data.claims, { role: 'fx_anon' });
	assert.equal(p.data.method, 'POST');
	assert.equal(p.data.read_only, 'off');
	assert.equal(p.data.statement_timeout, '10s');
});

test('errors as PostgREST returns them', async () => {
	const cases = [
		['custom_error', {}, 400, 'SH005', 'sold out', 'sku 7', 'try later'],
		['forbidden', {}, 403, 'PT403', 'not yours', null, null],
		['just_fail', {}, 400, 'P0001', 'I refuse!', 'Pretty simple', 'There is nothing you can do.'],
		['no_data', {}, 500, 'P0002', 'no such order', null, null],
		['add_them', { a: 1 }, 404, 'PGRST202'],
		['add_them', { a: 1, b: 2, c: 3 }, 404, 'PGRST202'],
		['no_such_function', {}, 404, 'PGRST202'],
		['add_them', { a: 'x', b: 1 }, 400, '22P02'],
		['add_them', { a: 99999999999, b: 1 }, 400, '22003'],
		['customers_only', {}, 401, '42501'],
		['sleepy', { ms: 'NaN' }, 400, '22P02'],
	];
	for (const [fn, args, status, code, message, details, hint] of cases) {
		const r = await anon.rpc(fn, args);
		assert.equal(r.status, status, `${fn} ${JSON.stringify(args)}: ${JSON.stringify(r.error)}`);
		assert.equal(r.data, null);
		assert.equal(r.error.code, code, fn);
		assert.deepEqual(Object.keys(r.error).sort(), ['code', 'details', 'hint', 'message']);
		if (message !== undefined) {
			assert.equal(r.error.message, message);
			assert.equal(r.error.details, details);
			assert.equal(r.error.hint, hint);
		}
	}
	const nf = await anon.rpc('add_them', { a: 1 });
	assert.equal(nf.error.message, 'Could not find the function httpd_fixture.add_them(a) in the schema cache');
});

test('23505 → 409; 42501 with a token → 403', async () => {
	const k = 'k' + Date.now();
	assert.equal((await anon.rpc('dup', { k })).status, 200);
	const again = await anon.rpc('dup', { k });
	assert.equal(again.status, 409);
	assert.equal(again.error.code, '23505');
	const other = new PostgrestClient(d.url, { headers: { Authorization: 'Bearer ' + customer('x', { role: 'fx_anon' }) } });
	const r = await other.rpc('customers_only');
	assert.equal(r.status, 403);
	assert.equal(r.error.code, '42501');
	assert.equal((await alice.rpc('customers_only')).data, 'welcome');
});

test('PTnnn statuses and the caller\'s identity from the token', async () => {
	assert.equal((await alice.rpc('my_thing', { owner: 'alice' })).data, 'yours');
	const other = await alice.rpc('my_thing', { owner: 'bob' });
	assert.equal(other.status, 404);
	assert.equal(other.error.code, 'PT404');
	const nobody = await anon.rpc('my_thing', { owner: 'alice' });
	assert.equal(nobody.status, 401);
	assert.equal(nobody.error.code, 'PT401');
});

test('response.status and response.headers set by the function are honoured', async () => {
	const r = await fetch(d.url + '/rpc/teapot', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
	assert.equal(r.status, 418);
	assert.equal(r.headers.get('x-fixture'), 'short and stout');
	assert.equal(await r.text(), '"tea"');
	const bad = await anon.rpc('bad_status');
	assert.equal(bad.status, 500);
	assert.equal(bad.error.code, 'PGRST112');
	// and nothing leaks into the next request on the same connections
	for (let i = 0; i < 10; i++) assert.equal((await anon.rpc('add_them', { a: i, b: 0 })).status, 200);
});

test('overloaded functions are chosen by argument names', async () => {
	assert.equal((await anon.rpc('over', { x: 1 })).data, 'x');
	assert.equal((await anon.rpc('over', { y: 'a' })).data, 'y');
});

test('statement_timeout per request', async () => {
	const { startDaemon: start } = require('./lib');
	const d2 = await start(2, ['--statement-timeout', '200']);
	try {
		const c = new PostgrestClient(d2.url);
		const r = await c.rpc('sleepy', { ms: 2000 });
		assert.equal(r.status, 500);
		assert.equal(r.error.code, '57014');
		assert.equal((await c.rpc('sleepy', { ms: 10 })).data, 10);
	} finally {
		assert.equal((await d2.stop()).code, 0);
	}
});
