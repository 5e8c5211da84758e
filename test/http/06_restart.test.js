// The database restarted under load: requests get 503 while it is down and
// succeed again afterwards, without restarting the daemon.  Restarts the
// tests' own cluster (test/http/run.sh started it), so this file runs last.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { startDaemon, post, sleep } = require('./lib');

const datadir = process.env.HTTPD_TEST_DATADIR;

function pgctl(...args) {
	const cmd = process.getuid() === 0 ? 'runuser' : 'pg_ctl';
	const full = process.getuid() === 0 ? ['-u', 'postgres', '--', 'env', `PATH=${process.env.PATH}`, 'pg_ctl', ...args] : args;
	const r = spawnSync(cmd, full, { encoding: 'utf8' });
	if (r.status !== 0) throw new Error('pg_ctl failed: ' + r.stderr);
}

test('database restart mid-load: 503 meanwhile, recovery without restarting the daemon', { skip: !datadir }, async () => {
	const d = await startDaemon(9, ['--pool', '4', '--pool-wait', '2000']);
	try {
		const counts = {};
		let stop = false;
		const load = (async () => {
			while (!stop) {
				const r = await post(d.url + '/rpc/add_them', '{"a": 20, "b": 22}').catch((e) => ({ status: 'error ' + e.message }));
				counts[r.status] = (counts[r.status] || 0) + 1;
				if (r.status === 200) assert.equal(r.text, '42');
				else if (r.status !== 503) assert.fail(`unexpected ${r.status}: ${r.text}`);
			}
		})();
		await sleep(300);
		pgctl('-D', datadir, '-m', 'fast', '-w', 'stop');
		await sleep(800);
		// down: every request is a 503 with PostgREST's shape
		const down = await post(d.url + '/rpc/add_them', '{"a": 1, "b": 1}');
		assert.equal(down.status, 503);
		assert.match(down.json.code, /^PGRST00[01]$/);
		// a provider's webhook meanwhile: 503, so it retries later
		const wh = await fetch(d.url + '/webhooks/mock', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"type": "x"}' });
		assert.equal(wh.status, 503);
		const health = await fetch(d.url + '/health');
		assert.equal(health.status, 503);
		assert.equal((await health.json()).database, 'unavailable');
		pgctl('-D', datadir, '-l', datadir + '/../server.log', '-w', 'start');
		await sleep(1000);
		stop = true;
		await load;
		assert.ok(counts[503] > 0, JSON.stringify(counts));
		assert.ok(counts[200] > 0, JSON.stringify(counts));
		// after the restart: every connection of the pool works again, the schema cache reloaded
		for (let i = 0; i < 20; i++) {
			const r = await post(d.url + '/rpc/add_them', `{"a": ${i}, "b": 1}`);
			assert.equal(r.status, 200, r.text);
		}
		assert.equal((await fetch(d.url + '/health')).status, 200);
		assert.equal(d.child.exitCode, null);
		assert.match(d.log(), /schema cache loaded/);
	} finally {
		assert.equal((await d.stop()).code, 0);
	}
});
