#!/usr/bin/env node
// Test receiver for shop's outbox delivery worker.
//
// A small HTTP server on 127.0.0.1 that stands in for merchant endpoints. It
// VERIFIES every delivery with the reference Standard Webhooks library
// (`new Webhook(secret).verify(body, headers)` from the npm package
// `standardwebhooks`) using the secret(s) registered for the request's path,
// records it, and answers the way the path asks. Only Node's built-in `http`
// and `standardwebhooks` are used.
//
// Usage:
//   node receiver.js [PORT] [--max-lifetime SECONDS] [--log-file FILE] [--no-stdin-watch] [--detach]
//
//   PORT             port on 127.0.0.1; 0 (the default) lets the OS pick one.
//                    When listening, one line "port=<N>" is printed on stdout.
//   --max-lifetime   exit after this many seconds whatever happens (default 600)
//   --log-file       also append every delivery as one JSON line to FILE
//   --no-stdin-watch do not exit when stdin closes (for running by hand with
//                    stdin at /dev/null)
//   --detach         keep running after the process that started it is gone
//                    (the quick start's demo receiver); implies --no-stdin-watch
//
// It stops by itself: when its stdin reaches end-of-file (the test that
// started it holds the other end of a pipe, so the receiver goes when the test
// goes, however it ends), when its parent process dies (checked every
// second), after --max-lifetime, on SIGTERM/SIGINT, or on POST /_quit.
//
// Endpoints: any path not starting with "/_" is a delivery endpoint. The
// whole path (without query string) names the endpoint: its secrets, its
// attempt counters and its log entries are keyed by it. The leading segments
// choose the behaviour; whatever follows is a free label, so that several
// endpoints (distinct URLs, distinct secrets) can share a behaviour:
//
//   /ok/...                       200 "ok"
//   /slow/<ms>/...                wait <ms>, then 200
//   /status/<code>/...            answer <code> (e.g. 500, 404; 3xx come with
//                                 "Location: /ok/redirected", never to be followed)
//   /retry-after/<secs>/...       429 with "Retry-After: <secs>"
//   /retry-after-date/<secs>/...  429 with "Retry-After: <HTTP date secs from now>"
//   /huge/<bytes>/...             200 with a body of <bytes> bytes, streamed
//                                 with Content-Length (e.g. /huge/52428800/x
//                                 = 50 MB); stops writing when the client
//                                 goes away
//   /huge-chunked/<bytes>/...     the same without Content-Length (chunked)
//   /reset/...                    read the request, then reset the connection
//                                 (socket.resetAndDestroy(): TCP RST, no answer)
//   /hang/...                     read the request and never answer (the
//                                 socket stays open until the client gives up)
//   /first/<n>/<behaviour...>     the first <n> deliveries of each webhook-id
//                                 to this path get <behaviour> (any of the
//                                 above, e.g. /first/2/status/500/x), later
//                                 ones get 200: "N failures, then success"
//
// A path that matches none of these answers 404 (and is still logged).
// POST /_mode can override the behaviour of one path at run time.
//
// Control API (JSON in, JSON out):
//
//   POST /_secret  {"path": "/ok/a", "secret": "whsec_...", "replace": false}
//                  adds a secret for the path (replace: true drops the older
//                  ones). A delivery is verified when the reference library
//                  accepts it with one of the path's secrets.
//   POST /_mode    {"path": "/ok/a", "mode": "/status/500"}  answer the path's
//                  deliveries as if they came to <mode>'s behaviour from now
//                  on; {"path": "/ok/a", "mode": null} removes the override
//   GET  /_log     every delivery received so far, oldest first:
//                  [{"seq", "path", "method", "webhook_id", "webhook_timestamp",
//                    "webhook_signature", "content_type", "user_agent", "type",
//                    "event_id", "order_id", "body", "body_bytes", "verified",
//                    "verify_error", "received_at", "received_ms", "attempt",
//                    "answer", "answered_ms", "client_closed"}]
//                  "attempt" is the how-manieth delivery of this webhook-id to
//                  this path; "answer" is the status sent, or "reset", "hang",
//                  "aborted" (the client went away before any answer);
//                  "client_closed" is true when the client closed the
//                  connection before the answer was complete (timeouts,
//                  a huge body read only in part).
//                  ?path=/ok/a keeps only that path; ?since=<seq> only later ones.
//   GET  /_stats   {"deliveries", "unique", "verified", "unverified", "by_path":
//                   {path: {"deliveries", "unique"}}}; "unique" counts distinct
//                  (path, webhook-id) pairs: the receiver's de-duplicated count
//   POST /_clear   forget the log and the attempt counters (secrets and modes stay)
//   GET  /_health  {"ok": true, "port": N, "pid": N}
//   POST /_quit    answer, then exit
'use strict';

const http = require('http');
const fs = require('fs');
const { Webhook } = require('standardwebhooks');

// ---- command line
let port = 0;
let maxLifetime = 600;
let logFile = null;
let stdinWatch = true;
let parentWatch = true;
{
	const args = process.argv.slice(2);
	for (let i = 0; i < args.length; i++) {
		const a = args[i];
		if (a === '--max-lifetime') maxLifetime = Number(args[++i]);
		else if (a === '--log-file') logFile = args[++i];
		else if (a === '--no-stdin-watch') stdinWatch = false;
		else if (a === '--detach') stdinWatch = parentWatch = false;
		else if (/^\d+$/.test(a)) port = Number(a);
		else {
			process.stderr.write(`receiver: unknown argument ${a}\n`);
			process.exit(2);
		}
	}
	if (!(maxLifetime > 0)) {
		process.stderr.write('receiver: --max-lifetime must be a positive number of seconds\n');
		process.exit(2);
	}
}

const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

// ---- state
const secrets = new Map();   // path -> [secret, ...]
const modes = new Map();     // path -> behaviour path overriding the request's
const attempts = new Map();  // path + '\n' + webhook-id -> deliveries seen
let log = [];
let seq = 0;

// ---- stopping by itself
function quit(why, code = 0) {
	process.stderr.write(`receiver: exiting (${why})\n`);
	process.exit(code);
}
setTimeout(() => quit(`max lifetime ${maxLifetime}s reached`), maxLifetime * 1000).unref();
const parentPid = process.ppid;
if (parentWatch) {
	setInterval(() => {
		if (process.ppid !== parentPid) quit('parent process is gone');
	}, 1000).unref();
}
if (stdinWatch) {
	process.stdin.on('end', () => quit('stdin closed'));
	process.stdin.on('close', () => quit('stdin closed'));
	process.stdin.on('error', () => quit('stdin error'));
	process.stdin.resume();
}
process.on('SIGTERM', () => quit('SIGTERM'));
process.on('SIGINT', () => quit('SIGINT'));

// ---- helpers
function sendJson(res, status, value) {
	const body = JSON.stringify(value);
	res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
	res.end(body);
}

function readBody(req, limit) {
	return new Promise((resolve, reject) => {
		const chunks = [];
		let size = 0;
		req.on('data', (c) => {
			size += c.length;
			if (size > limit) {
				reject(new Error('request body too large'));
				req.destroy();
				return;
			}
			chunks.push(c);
		});
		req.on('end', () => resolve(Buffer.concat(chunks)));
		req.on('error', reject);
	});
}

// Parse a behaviour path into {kind, ...}; null when it names none.
function parseBehaviour(segments) {
	const [kind, a, ...rest] = segments;
	const num = (s) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : null);
	switch (kind) {
	case 'ok':
	case 'reset':
	case 'hang':
		return { kind };
	case 'slow':
		return num(a) === null ? null : { kind, ms: num(a) };
	case 'status':
		return num(a) === null || num(a) < 100 || num(a) > 999 ? null : { kind, code: num(a) };
	case 'retry-after':
	case 'retry-after-date':
		return num(a) === null ? null : { kind: 'retry-after', secs: num(a), date: kind === 'retry-after-date' };
	case 'huge':
	case 'huge-chunked':
		return num(a) === null ? null : { kind: 'huge', bytes: num(a), chunked: kind === 'huge-chunked' };
	case 'first': {
		const inner = parseBehaviour(rest);
		return num(a) === null || inner === null || inner.kind === 'first' ? null : { kind, n: num(a), inner };
	}
	default:
		return null;
	}
}

function verify(path, body, headers) {
	const list = secrets.get(path);
	if (!list || list.length === 0) return { verified: false, error: 'no secret registered for this path' };
	let lastError = null;
	for (const secret of list) {
		try {
			new Webhook(secret).verify(body, headers);
			return { verified: true, error: null };
		} catch (e) {
			lastError = `${e.name}: ${e.message}`;
		}
	}
	return { verified: false, error: lastError };
}

function appendLogFile(entry) {
	if (logFile) fs.appendFile(logFile, JSON.stringify(entry) + '\n', () => {});
}

// ---- deliveries
async function delivery(req, res, path) {
	let body;
	try {
		body = await readBody(req, MAX_REQUEST_BYTES);
	} catch (e) {
		if (!res.headersSent && !res.destroyed) sendJson(res, 413, { error: e.message });
		return;
	}
	const now = Date.now();
	const webhookId = req.headers['webhook-id'] ?? null;
	const key = path + '\n' + webhookId;
	const attempt = (attempts.get(key) ?? 0) + 1;
	attempts.set(key, attempt);

	const { verified, error } = verify(path, body, req.headers);
	let parsed = null;
	try {
		parsed = JSON.parse(body.toString('utf8'));
	} catch (e) {
		parsed = null;
	}
	const entry = {
		seq: ++seq,
		path,
		method: req.method,
		webhook_id: webhookId,
		webhook_timestamp: req.headers['webhook-timestamp'] ?? null,
		webhook_signature: req.headers['webhook-signature'] ?? null,
		content_type: req.headers['content-type'] ?? null,
		user_agent: req.headers['user-agent'] ?? null,
		type: parsed && typeof parsed === 'object' ? parsed.type ?? null : null,
		event_id: parsed && typeof parsed === 'object' ? parsed.id ?? null : null,
		order_id: parsed?.data?.order?.id ?? null,
		body: body.toString('utf8'),
		body_bytes: body.length,
		verified,
		verify_error: error,
		received_at: new Date(now).toISOString(),
		received_ms: now,
		attempt,
		answer: null,
		answered_ms: null,
		client_closed: false,
	};
	log.push(entry);

	const answered = (what) => {
		if (entry.answer === null) {
			entry.answer = what;
			entry.answered_ms = Date.now();
			appendLogFile(entry);
		}
	};
	res.on('close', () => {
		if (!res.writableFinished) {
			entry.client_closed = true;
			answered('aborted');
		}
	});

	const segments = (modes.get(path) ?? path).split('/').filter((s) => s !== '');
	let b = parseBehaviour(segments);
	if (b && b.kind === 'first') b = attempt <= b.n ? b.inner : { kind: 'ok' };
	if (!b) {
		answered(404);
		sendJson(res, 404, { error: 'no behaviour for this path' });
		return;
	}
	switch (b.kind) {
	case 'ok':
		answered(200);
		res.writeHead(200, { 'content-type': 'text/plain' });
		res.end('ok');
		break;
	case 'slow': {
		const t = setTimeout(() => {
			if (res.destroyed) return;
			answered(200);
			res.writeHead(200, { 'content-type': 'text/plain' });
			res.end('ok, slowly');
		}, b.ms);
		res.on('close', () => clearTimeout(t));
		break;
	}
	case 'status': {
		answered(b.code);
		const headers = { 'content-type': 'text/plain' };
		if (b.code >= 300 && b.code < 400) headers.location = '/ok/redirected';
		res.writeHead(b.code, headers);
		res.end(`status ${b.code} as asked`);
		break;
	}
	case 'retry-after':
		answered(429);
		res.writeHead(429, { 'content-type': 'text/plain',
			'retry-after': b.date ? new Date(Date.now() + b.secs * 1000).toUTCString() : String(b.secs) });
		res.end('slow down');
		break;
	case 'huge': {
		answered(200);
		const headers = { 'content-type': 'text/plain' };
		if (!b.chunked) headers['content-length'] = String(b.bytes);
		res.writeHead(200, headers);
		const chunk = Buffer.alloc(64 * 1024, 'x');
		let left = b.bytes;
		const pump = () => {
			while (left > 0 && !res.destroyed) {
				const n = Math.min(left, chunk.length);
				left -= n;
				if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
					res.once('drain', pump);
					return;
				}
			}
			if (!res.destroyed) res.end();
		};
		pump();
		break;
	}
	case 'reset':
		answered('reset');
		if (typeof req.socket.resetAndDestroy === 'function') req.socket.resetAndDestroy();
		else req.socket.destroy();
		break;
	case 'hang':
		answered('hang');
		// no answer; the socket closes when the client gives up
		break;
	default:
		answered(500);
		sendJson(res, 500, { error: 'unknown behaviour' });
	}
}

// ---- control API
async function control(req, res, path, query) {
	const bodyJson = async () => {
		const raw = (await readBody(req, 1024 * 1024)).toString('utf8');
		return raw === '' ? {} : JSON.parse(raw);
	};
	if (req.method === 'POST' && path === '/_secret') {
		const { path: p, secret, replace } = await bodyJson();
		if (typeof p !== 'string' || !p.startsWith('/') || typeof secret !== 'string') {
			return sendJson(res, 400, { error: 'need {"path": "/...", "secret": "whsec_..."}' });
		}
		try {
			new Webhook(secret); // refuse what the library cannot use
		} catch (e) {
			return sendJson(res, 400, { error: `bad secret: ${e.message}` });
		}
		const list = replace ? [] : secrets.get(p) ?? [];
		if (!list.includes(secret)) list.push(secret);
		secrets.set(p, list);
		return sendJson(res, 200, { path: p, secrets: list.length });
	}
	if (req.method === 'POST' && path === '/_mode') {
		const { path: p, mode } = await bodyJson();
		if (typeof p !== 'string' || !p.startsWith('/')) return sendJson(res, 400, { error: 'need {"path": "/..."}' });
		if (mode === null || mode === undefined) {
			modes.delete(p);
		} else {
			if (typeof mode !== 'string' || !parseBehaviour(mode.split('/').filter((s) => s !== ''))) {
				return sendJson(res, 400, { error: `no behaviour named by ${JSON.stringify(mode)}` });
			}
			modes.set(p, mode);
		}
		return sendJson(res, 200, { path: p, mode: modes.get(p) ?? null });
	}
	if (req.method === 'GET' && path === '/_log') {
		const since = Number(query.get('since') ?? 0);
		const only = query.get('path');
		return sendJson(res, 200, log.filter((e) => e.seq > since && (only === null || e.path === only)));
	}
	if (req.method === 'GET' && path === '/_stats') {
		const byPath = {};
		const unique = new Set();
		let verified = 0;
		for (const e of log) {
			const s = (byPath[e.path] ??= { deliveries: 0, unique: 0, ids: new Set() });
			s.deliveries++;
			s.ids.add(e.webhook_id);
			unique.add(e.path + '\n' + e.webhook_id);
			if (e.verified) verified++;
		}
		for (const s of Object.values(byPath)) {
			s.unique = s.ids.size;
			delete s.ids;
		}
		return sendJson(res, 200, {
			deliveries: log.length, unique: unique.size, verified, unverified: log.length - verified, by_path: byPath,
		});
	}
	if (req.method === 'POST' && path === '/_clear') {
		log = [];
		attempts.clear();
		return sendJson(res, 200, { cleared: true });
	}
	if (req.method === 'GET' && path === '/_health') {
		return sendJson(res, 200, { ok: true, port: server.address().port, pid: process.pid });
	}
	if (req.method === 'POST' && path === '/_quit') {
		res.on('finish', () => quit('POST /_quit'));
		return sendJson(res, 200, { bye: true });
	}
	return sendJson(res, 404, { error: `no control ${req.method} ${path}` });
}

const server = http.createServer((req, res) => {
	const url = new URL(req.url, 'http://127.0.0.1');
	const path = url.pathname;
	const handler = path.startsWith('/_') ? control(req, res, path, url.searchParams) : delivery(req, res, path);
	handler.catch((e) => {
		process.stderr.write(`receiver: ${req.method} ${path}: ${e.stack}\n`);
		if (!res.headersSent && !res.destroyed) sendJson(res, 500, { error: e.message });
	});
});
// a hanging request must outlive any client timeout a test sets
server.requestTimeout = 0;
server.headersTimeout = 60 * 1000;
server.keepAliveTimeout = 5 * 1000;
server.on('clientError', (err, socket) => {
	if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
	else socket.destroy();
});
server.listen(port, '127.0.0.1', () => {
	process.stdout.write(`port=${server.address().port}\n`);
});
server.on('error', (e) => quit(`listen: ${e.message}`, 1));
