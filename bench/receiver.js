// bench/receiver.js: the benchmark's local webhook receiver (Node's http module).
//
//   node bench/receiver.js PORTFILE WATCH_PID
//
// Listens on 127.0.0.1 on a free port (written to PORTFILE once listening) and
// answers every POST with 200 and a 2-byte body, keeping connections alive
// (libcurl reuses them).  No signature check: it measures the sender.  It
// counts requests and distinct webhook-id values (evt_<event id>):
//
//   GET /stats          {"requests", "distinct_ids", "duplicates", "without_id",
//                        "min_id", "max_id", "bytes"} since the last reset
//   GET /stats?reset=1  the same, then starts counting from zero
//
// It stops by itself: on SIGTERM/SIGINT, within a second once process
// WATCH_PID (the bench run) is gone, and in any case after 2 hours.
'use strict';
const http = require('http');
const fs = require('fs');

const portFile = process.argv[2];
const watchPid = parseInt(process.argv[3] || '0', 10);

let requests, ids, duplicates, withoutId, minId, maxId, bytes;
function reset() {
	requests = 0; ids = new Set(); duplicates = 0; withoutId = 0;
	minId = null; maxId = null; bytes = 0;
}
reset();

const server = http.createServer((req, res) => {
	if (req.method === 'POST') {
		requests++;
		const id = req.headers['webhook-id'];
		if (id === undefined) {
			withoutId++;
		} else if (ids.has(id)) {
			duplicates++;
		} else {
			ids.add(id);
			const n = parseInt(id.replace(/^evt_/, ''), 10);
			if (!Number.isNaN(n)) {
				if (minId === null || n < minId) minId = n;
				if (maxId === null || n > maxId) maxId = n;
			}
		}
		req.on('data', (chunk) => { bytes += chunk.length; });
		req.on('end', () => {
			res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
			res.end('ok');
		});
		return;
	}
	if (req.method === 'GET' && req.url.startsWith('/stats')) {
		const body = JSON.stringify({
			requests, distinct_ids: ids.size, duplicates, without_id: withoutId,
			min_id: minId, max_id: maxId, bytes,
		});
		if (req.url.includes('reset=1')) reset();
		res.writeHead(200, { 'content-type': 'application/json' });
		res.end(body + '\n');
		return;
	}
	res.writeHead(405);
	res.end();
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;

function stop() {
	server.close();
	process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// WATCH_PID is gone: no such process, or a zombie not yet reaped.
function gone(pid) {
	try {
		const stat = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
		return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
	} catch (e) {
		try {
			process.kill(pid, 0);
			return false;
		} catch (e2) {
			return true;
		}
	}
}
if (watchPid > 0) {
	setInterval(() => { if (gone(watchPid)) stop(); }, 1000).unref();
}
setTimeout(stop, 2 * 3600 * 1000).unref();

server.listen(0, '127.0.0.1', () => {
	fs.writeFileSync(portFile + '.tmp', String(server.address().port) + '\n');
	fs.renameSync(portFile + '.tmp', portFile);
});
