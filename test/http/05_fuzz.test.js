// A fuzz pass over the request boundary: a few thousand malformed requests
// (random and mutated JSON, wrong types, huge numbers, long paths, odd
// headers, raw garbage on the socket).  Every answer must be an HTTP client
// error (4xx) or, for garbage on the socket, a closed connection; the daemon
// must still answer /health at the end.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { startDaemon, raw } = require('./lib');

let seed = Number(process.env.FUZZ_SEED || 20261130);
function rnd() { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; }
const pick = (a) => a[Math.floor(rnd() * a.length)];
const int = (n) => Math.floor(rnd() * n);
function randomBytes(n) { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = int(256); return b; }
function randomString(n) { let s = ''; for (let i = 0; i < n; i++) s += String.fromCharCode(32 + int(95)); return s; }

const fns = ['add_them', 'greet', 'big', 'echo_json', 'one_pair', 'pairs', 'squares', 'ints', 'sleepy', 'my_thing', 'dup'];
const badValues = () => pick([
	'abc', '', ' ', '1.5e', '--1', '0x10', 'NaN', 'Infinity', '１２', '1 2',
	'9'.repeat(1 + int(400)), -1e308, 1e308, 12345678901234567890, 3.5, true, false, [], [1, 2], {}, { a: 1 },
	randomString(1 + int(50)).replace(/[0-9]/g, 'x'),
]);

const malformed = () => pick([
	() => randomBytes(1 + int(200)),
	() => '{' + randomString(int(40)),
	() => '{"a": 1, "b": 2'.slice(0, int(14)),
	() => '{"a":' + '['.repeat(3000) + ']'.repeat(3000) + '}',
	() => '{"a": "\\ud800"}x',
	() => '[' + int(100) + ']',
	() => '{"a": 1}{"b": 2}',
	() => '{"' + randomString(int(20)) + '": }',
	() => Buffer.concat([Buffer.from('{"a": "'), randomBytes(10), Buffer.from('"}')]),
	() => '{"a": 1e99999, "b": 1}',
])();

let d;
test.before(async () => { d = await startDaemon(8, ['--max-body', '32768']); });
test.after(async () => { assert.equal((await d.stop()).code, 0); });

test('malformed requests always get a 4xx; the daemon survives', async () => {
	const bad = [];
	const check = (what, status) => { if (!(status >= 400 && status < 500)) bad.push(`${what} → ${status}`); };
	for (let i = 0; i < 3000; i++) {
		const kind = i % 6;
		try {
			if (kind === 0) {
				const body = malformed();
				const r = await fetch(d.url + '/rpc/' + pick(fns), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
				await r.arrayBuffer();
				check(`malformed body #${i}`, r.status);
			} else if (kind === 1) {
				const args = pick([{ a: badValues(), b: 1 }, { a: 1, b: badValues() }, { n: badValues() }, { id: badValues() }, { ms: badValues() }]);
				const fn = 'a' in args ? 'add_them' : 'n' in args ? pick(['pairs', 'ints', 'squares', 'big']) : 'id' in args ? 'one_pair' : 'sleepy';
				const r = await fetch(d.url + '/rpc/' + fn, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(args) });
				await r.arrayBuffer();
				check(`wrong type ${fn} ${JSON.stringify(args).slice(0, 80)}`, r.status);
			} else if (kind === 2) {
				const name = pick([randomString(1 + int(300)).replace(/[?#%\s]/g, 'z'), 'x'.repeat(64 + int(6000)), 'add_them;drop', 'ADD_THEM', 'add_them"', "add_them'--"]);
				const r = await fetch(d.url + '/rpc/' + encodeURIComponent(name), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
				await r.arrayBuffer();
				check(`long/odd path #${i}`, r.status);
			} else if (kind === 3) {
				const headers = pick([
					{ Authorization: 'Bearer ' + randomString(int(300)).replace(/\s/g, '') },
					{ Authorization: 'Bearer a.b.c' },
					{ Authorization: 'Bearer ' + 'e'.repeat(5000) + '.x.y' },
					{ 'Content-Type': randomString(20) },
					{ 'X-Odd': randomString(2000) },
				]);
				const r = await fetch(d.url + '/rpc/add_them', { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: pick(['{"a": "x", "b": 1}', '{"c": 1}', '{']) });
				await r.arrayBuffer();
				check(`odd headers #${i}`, r.status);
			} else if (kind === 4) {
				const q = pick(['a=%ff&b=1', 'a=' + '9'.repeat(50) + '&b=1', 'n=' + encodeURIComponent(randomString(30)), 'zzz=1', 'a=1', '=&=&', 'a=%00&b=1']);
				const r = await fetch(d.url + '/rpc/' + pick(['add_them', 'ints', 'bump', 'nope']) + '?' + q);
				await r.arrayBuffer();
				check(`query ${q.slice(0, 60)}`, r.status);
			} else {
				const line = pick([
					randomBytes(1 + int(300)).toString('latin1'),
					`POST /rpc/add_them HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n`,
					`POST /rpc/add_them HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n`,
					`GET /rpc/add_them?a=1&b=\xff HTTP/1.1\r\nHost: x\r\nX-Bin: \x01\x02\xfe\r\n\r\n`,
					`GET ${'/'.repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
					`BREW /rpc/add_them HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
					`POST /rpc/add_them HTTP/9.9\r\nHost: x\r\n\r\n`,
				]);
				if (i % 60 === 5) {
					const r = await raw(d.port, line, { timeout: 3000, end: true });
					// answered with a 4xx, or closed without an answer; never left hanging
					if (r.timedOut || (r.status && !(r.status >= 400 && r.status < 500))) bad.push(`raw #${i} → ${r.status}${r.timedOut ? ' (hung)' : ''}`);
				}
			}
		} catch (e) {
			bad.push(`#${i} kind ${kind}: ${e.message}`);
		}
	}
	assert.deepEqual(bad.slice(0, 20), []);
	assert.equal(d.child.exitCode, null, 'daemon still running');
	const h = await fetch(d.url + '/health');
	assert.equal(h.status, 200);
	assert.deepEqual(await h.json(), { database: 'ok', worker: false });
});
