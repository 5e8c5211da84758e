// Authentication: HS256 tokens only, exp/nbf, forged and malformed tokens,
// PostgREST's 401 errors (PGRST301 / PGRST303) and guest tokens.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { PostgrestClient } = require('@supabase/postgrest-js');
const { startDaemon, sign, customer, now, SECRET } = require('./lib');

let d;
test.before(async () => { d = await startDaemon(3); });
test.after(async () => { assert.equal((await d.stop()).code, 0); });

const client = (token) => new PostgrestClient(d.url, token === undefined ? {} : { headers: { Authorization: 'Bearer ' + token } });

test('no token → the anonymous role', async () => {
	const r = await client().rpc('whoami');
	assert.equal(r.data.role, 'fx_anon');
});

test('a valid token → its role and claims', async () => {
	const r = await client(customer('carol', { email: 'c@example.com' })).rpc('whoami');
	assert.equal(r.data.role, 'fx_customer');
	assert.equal(r.data.claims.sub, 'carol');
	assert.equal(r.data.claims.email, 'c@example.com');
});

test('bad tokens → 401 with PostgREST\'s codes and a WWW-Authenticate challenge', async () => {
	const [h, p] = customer('x').split('.');
	const cases = [
		['expired', sign({ sub: 'x', role: 'fx_customer', exp: now() - 3600 }), 'PGRST303', 'JWT expired'],
		['not yet valid', sign({ sub: 'x', role: 'fx_customer', nbf: now() + 3600 }), 'PGRST303', 'JWT not yet valid'],
		['forged (other secret)', sign({ sub: 'x', role: 'fx_customer' }, { secret: SECRET + 'x' }), 'PGRST301'],
		['alg none, no signature', `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.`, 'PGRST301'],
		['alg none with our signature', sign({ sub: 'x', role: 'fx_customer' }, { header: { alg: 'none' } }), 'PGRST301'],
		['HS512', sign({ sub: 'x' }, { header: { alg: 'HS512', typ: 'JWT' } }), 'PGRST301'],
		['payload swapped', `${h}.${Buffer.from(JSON.stringify({ sub: 'admin', role: 'postgres' })).toString('base64url')}.${customer('x').split('.')[2]}`, 'PGRST301'],
		['two parts', `${h}.${p}`, 'PGRST301'],
		['garbage', 'not-a-token', 'PGRST301'],
		['empty', '', 'PGRST301'],
		['role not a string', sign({ sub: 'x', role: 42 }), 'PGRST303'],
		['truncated signature', customer('x').slice(0, -5), 'PGRST301'],
	];
	for (const [name, token, code, message] of cases) {
		const res = await fetch(d.url + '/rpc/whoami', { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token }, body: '{}' });
		assert.equal(res.status, 401, name);
		const body = await res.json();
		assert.equal(body.code, code, name);
		if (message) assert.equal(body.message, message, name);
		assert.match(res.headers.get('www-authenticate'), /^Bearer/, name);
	}
	// through the client too
	const r = await client(sign({ sub: 'x', role: 'fx_customer', exp: now() - 100 })).rpc('add_them', { a: 1, b: 1 });
	assert.equal(r.status, 401);
	assert.equal(r.error.code, 'PGRST303');
});

test('a token whose role the authenticator may not switch to is refused by the database', async () => {
	const r = await client(sign({ sub: 'x', role: 'postgres' })).rpc('add_them', { a: 1, b: 1 });
	assert.ok(r.status === 403 || r.status === 400, String(r.status));
	assert.equal(r.data, null);
	const nobody = await client(sign({ sub: 'x', role: 'no_such_role' })).rpc('add_them', { a: 1, b: 1 });
	assert.equal(nobody.status, 400);
	assert.equal(nobody.error.code, '22023');
});

test('POST /auth/guest → a 7-day customer token with a random guest subject', async () => {
	const r1 = await fetch(d.url + '/auth/guest', { method: 'POST' });
	assert.equal(r1.status, 200);
	const { token } = await r1.json();
	const [h, p, s] = token.split('.');
	assert.deepEqual(JSON.parse(Buffer.from(h, 'base64url')), { alg: 'HS256', typ: 'JWT' });
	const claims = JSON.parse(Buffer.from(p, 'base64url'));
	assert.match(claims.sub, /^guest:[0-9a-f]{32}$/);
	assert.equal(claims.role, 'fx_customer');
	assert.ok(Math.abs(claims.exp - now() - 7 * 24 * 3600) < 60);
	assert.equal(crypto.createHmac('sha256', SECRET).update(h + '.' + p).digest('base64url'), s);
	const me = await client(token).rpc('whoami');
	assert.equal(me.data.claims.sub, claims.sub);
	assert.equal((await client(token).rpc('my_thing', { owner: claims.sub })).data, 'yours');
	const { token: t2 } = await (await fetch(d.url + '/auth/guest', { method: 'POST' })).json();
	assert.notEqual(JSON.parse(Buffer.from(t2.split('.')[1], 'base64url')).sub, claims.sub);
	assert.equal((await fetch(d.url + '/auth/guest')).status, 405);
});

test('tokens never reach the log', async () => {
	const t = customer('secret-subject');
	await client(t).rpc('whoami');
	await fetch(d.url + '/rpc/greet?name=hidden-query-value');
	assert.ok(!d.log().includes(t.split('.')[2]));
	assert.ok(!d.log().includes('hidden-query-value'));
	assert.match(d.log(), /POST "\/rpc\/whoami" 200 [0-9.]+ms/);
});
