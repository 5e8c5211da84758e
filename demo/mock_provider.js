#!/usr/bin/env node
// Mock payment provider for shop: a local stand-in for the parts of Stripe's
// API the shop calls, with a hosted payment page and Standard-Webhooks-signed
// payment events.  Used by the quick start (the buyer's "pay" step) and by
// the tests of the provider calls (test/t/03*_provider_*.pl).
//
// Usage:
//   node demo/mock_provider.js [--port N] [--api-key K] [--webhook-secret whsec_...]
//                              [--webhook-url URL] [--detach] [--max-lifetime S]
//                              [--no-stdin-watch]
//
//   --port N            port on 127.0.0.1 (default 18090, the mock kind's
//                       default api_base in the README); 0 lets the OS pick.
//                       When listening, "port=<N>" is printed on stdout.
//   --api-key K         the secret key every /v1 call must present as
//                       "Authorization: Bearer K" (default sk_test_mock)
//   --webhook-secret S  Standard Webhooks signing secret, "whsec_" + base64
//                       (give the shop the same one: shop_set_provider('mock',
//                       'mock', S, ...)).  Without it a random one is made and
//                       printed as "webhook_secret=<S>" after the port line.
//   --webhook-url URL   also POST every event there (retried: 5 attempts,
//                       1 s, 2 s, 4 s, 8 s apart, each re-signed, same id)
//   --detach            keep running after the process that started it is
//                       gone and when stdin closes (the quick start)
//   --max-lifetime S    exit after S seconds (default 600, or no limit with
//                       --detach; 0 = no limit)
//   --no-stdin-watch    do not exit when stdin closes
//
// It stops by itself, like test/receiver/receiver.js: when its stdin reaches
// end-of-file (a test holds the other end of a pipe, so the mock goes when the
// test goes, however it ends), when its parent process dies (checked every
// second), after --max-lifetime, on SIGTERM/SIGINT, or on POST /_quit.
//
// Dependencies: Node 20's built-in modules and the npm package
// `standardwebhooks` (the reference Standard Webhooks library), taken from
// test/receiver/node_modules (installed, pinned by its lockfile, by
// `bash test/receiver/install.sh`); failing that, from Node's usual module
// search (NODE_PATH, a node_modules above this file).
//
// ---------------------------------------------------------------------------
// The API (Stripe's shapes: form-encoded bodies with the bracket syntax,
// JSON answers, errors as {"error": {"type", "message", "param"?, "code"?}}):
//
//   POST /v1/checkout/sessions               create a hosted checkout (mode=payment)
//   GET  /v1/checkout/sessions/{id}          retrieve it
//   GET  /v1/checkout/sessions/{id}/line_items
//   POST /v1/checkout/sessions/{id}/expire   open -> expired (else 400)
//   POST /v1/refunds                         refund a payment (all or part)
//   GET  /v1/refunds/{id}, GET /v1/payment_intents/{id}
//
// Authentication: "Authorization: Bearer <key>" (or Basic with the key as
// user name, as Stripe also accepts); anything else is 401.
//
// Idempotency, as Stripe's v1 API does it: a POST with an Idempotency-Key
// (at most 255 characters) whose endpoint began executing saves its status
// and body; a later POST with the same key and the same parameters gets that
// saved answer (with "Idempotent-Replayed: true") and nothing is created; the
// same key with other parameters or another endpoint is 400 idempotency_error;
// the same key while its first request is still executing is 409
// idempotency_error.  Requests refused before execution (authentication,
// parameter validation) save nothing, so a corrected retry runs.  Failures
// injected with POST /_fail happen in front of the API (the "network"): a
// request that fails there without "process" never reached the API and saves
// nothing.  Every POST is logged with its key, or with null when it had none.
//
// Validation of checkout sessions follows Stripe's documentation: mode is
// required (only "payment" is supported here), at least one line item, each
// with price_data[currency], price_data[unit_amount] (an integer >= 0),
// price_data[product_data][name] and a positive integer quantity, all lines
// in one currency; success_url required; expires_at (whole seconds) from 30
// minutes to 24 hours after the request arrives (Stripe's window, checked in
// whole seconds with no slack, like Stripe: send a margin); metadata at most
// 50 keys of 40 characters with values of 500; client_reference_id at most
// 200 characters.  Parameters Stripe knows but this mock does not model are
// accepted and ignored; names Stripe does not know are refused ("Received
// unknown parameter").  Sessions are "open" until paid ("complete",
// payment_status "paid", a PaymentIntent pi_mock_...), cancelled on the
// hosted page or expired (by the API, or when expires_at passes): "expired".
//
// Hosted page: GET /pay/{session id} shows the lines, the total and Pay /
// Cancel buttons (plain HTML, no external resources).  POST /pay/{id}/pay
// completes the session and emits "payment.succeeded"; POST /pay/{id}/cancel
// expires it and emits "payment.cancelled"; both then redirect (303) to
// success_url / cancel_url ("{CHECKOUT_SESSION_ID}" in them is replaced by the
// session id, as Stripe does).  A session that expires emits
// "payment.cancelled" too (Stripe's checkout.session.expired).
//
// Webhook events (the shop's "mock" kind reads them with its default
// mapping): body {"type": "payment.succeeded" | "payment.cancelled",
// "timestamp": ISO 8601, "data": {"order_id": metadata[order_id], "amount":
// amount_total, "currency": upper case, "payment_id": "pi_mock_..." or null,
// "session_id": "cs_mock_..."}}, headers webhook-id (msg_mock_...),
// webhook-timestamp, webhook-signature signed with the standardwebhooks
// library's sign().  Every event is kept for GET /_events (relay it with
// SELECT shop.shop_handle_webhook('mock', headers::jsonb, body)) and, with
// --webhook-url, also delivered there.  Refunds emit no event (the shop
// learns a refund's outcome from the API's answer).
//
// Control API for tests and the demo (JSON in, JSON out; no authentication):
//
//   GET  /_health    {"ok": true, "port", "pid"}
//   GET  /_requests  every request to /v1 and /pay, oldest first: {"seq",
//                    "method", "path", "query", "headers" (lower-case names;
//                    authorization shown as "[redacted]"), "idempotency_key"
//                    (null when absent), "authorization" ("bearer", "basic",
//                    "other" or null), "auth_ok", "content_type", "raw_body",
//                    "form" (the body parsed with Stripe's bracket syntax, or
//                    null), "received_ms", "answer" (status, or "refused",
//                    "hung", "aborted"), "replayed", "failure" (the injected
//                    mode or null), "answered_ms"}.
//                    ?path=<prefix> keeps those whose path starts with it;
//                    ?since=<seq> only later ones.  The API key is never
//                    shown.
//   POST /_fail      {"path": "/v1/refunds", "mode": "refuse" | "hang" |
//                    "status" | "slow", "times": 1, "status": 500,
//                    "retry_after": 2, "body": "not json", "message": "...",
//                    "process": false, "delay_ms": 2000, "method": "POST"}:
//                    the next <times> requests whose path starts with <path>
//                    fail: "refuse" destroys the connection (no answer),
//                    "hang" never answers (the socket stays open until the
//                    client gives up), "status" answers <status> (default
//                    500) with Retry-After when given and <body> as given
//                    (default: a Stripe error object with <message>), "slow"
//                    answers after <delay_ms>.  With "process": true the
//                    request is first executed normally (the session or
//                    refund is made and its answer saved for the key) and
//                    only its answer fails: a provider that acted but whose
//                    answer was lost.  "slow" executes at once (its key is
//                    then replayable) unless "process": false, in which case
//                    it executes after the delay, its key "in progress" until
//                    then (a concurrent retry gets 409).  Rules stack; the
//                    oldest matching one with times left applies.
//                    {"clear": true} removes all rules; GET /_fail lists them.
//   POST /_pay       {"session_id"}: as if the buyer clicked Pay
//   POST /_cancel    {"session_id"}: as if the buyer clicked Cancel
//   POST /_expire    {"session_id"}: as if its expires_at had passed
//   GET  /_state     {"sessions", "payments", "refunds", "idempotency_keys",
//                    "posts_without_idempotency_key"}; sessions carry their
//                    "line_items" as {name, currency, unit_amount, quantity}
//   GET  /_events    every webhook event, oldest first: {"seq", "id", "type",
//                    "headers", "body", "created_ms", "deliveries"}; body is
//                    the exact signed string.  ?since=<seq>; ?fresh=1 signs
//                    them again with the current time (for a late relay: the
//                    shop refuses timestamps older than its tolerance).
//   POST /_quit      answer, then exit
//
// ---------------------------------------------------------------------------
// Toss Payments (the shop's "toss" kind; https://docs.tosspayments.com/reference):
// JSON bodies and answers, errors as {"code", "message"} with Toss's codes.
//
//   POST /v1/payments/confirm              {paymentKey, orderId, amount}: capture an
//                                          authorised payment (IN_PROGRESS -> DONE)
//   POST /v1/payments/{paymentKey}/cancel  {cancelReason, cancelAmount?}: refund
//                                          (all or part; DONE -> PARTIAL_CANCELED / CANCELED)
//   GET  /v1/payments/{paymentKey}         the Payment object
//
// Authentication: "Authorization: Basic base64(<api key> + ':')" only (Toss's
// scheme); anything else is 401 UNAUTHORIZED_KEY.  Idempotency, as Toss
// documents it (https://docs.tosspayments.com/guides/using-api/idempotency-key):
// a POST with an Idempotency-Key (at most 300 characters) that was executed
// saves its answer, errors included; the same key with the same body gets that
// answer again and nothing happens twice; the same key with another body or
// path is 422 IDEMPOTENCY_KEY_REUSED (this mock's code for the case).  Confirm
// checks, in Toss's words: unknown paymentKey 404 NOT_FOUND_PAYMENT_SESSION;
// orderId or amount not the ones authorised 400 INVALID_REQUEST; a payment
// registered with "reject" 403 with that code (e.g. REJECT_CARD_PAYMENT, and it
// becomes ABORTED); a payment no longer IN_PROGRESS 400 ALREADY_PROCESSED_PAYMENT.
// Cancel: 400 NOT_CANCELABLE_PAYMENT unless DONE or PARTIAL_CANCELED, 400
// NOT_CANCELABLE_AMOUNT above the balance.  Failure injection (/_fail) applies
// to these paths as to Stripe's.
//
// The widget (what Toss's JavaScript SDK shows the buyer): GET
// /toss/widget?orderId=&amount=&orderName=&successUrl=&failUrl= shows the order
// and Pay / Cancel; POST /toss/widget/pay authorises a payment (IN_PROGRESS,
// a new paymentKey) and redirects (303) to successUrl?paymentKey=&orderId=&amount=,
// as Toss does; POST /toss/widget/cancel redirects to
// failUrl?code=PAY_PROCESS_CANCELED&message=&orderId=.
//
// Control:
//   POST /_toss/authorize {orderId, amount, reject?}: as if the buyer paid in the
//                    widget; returns the Payment (with its paymentKey)
//   GET  /_toss/state {"payments": [Payment + "captures" (confirms executed) and
//                    "confirm_calls" (confirm requests that reached the API)]}
//   GET  /_toss/events every PAYMENT_STATUS_CHANGED webhook body this mock would
//                    have sent (unsigned, as Toss sends them): {"seq", "body"}
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const path = require('node:path');

function loadStandardWebhooks() {
	const local = path.join(__dirname, '..', 'test', 'receiver', 'node_modules', 'standardwebhooks');
	try {
		return require(local);
	} catch (e) {
		try {
			return require('standardwebhooks');
		} catch (e2) {
			process.stderr.write('mock_provider: the npm package standardwebhooks is missing: '
				+ 'run bash test/receiver/install.sh (or set NODE_PATH)\n');
			process.exit(2);
		}
	}
}
const { Webhook } = loadStandardWebhooks();

// ---- command line
const opts = {
	port: 18090,
	apiKey: 'sk_test_mock',
	webhookSecret: null,
	webhookUrl: null,
	detach: false,
	maxLifetime: null,
	stdinWatch: true,
};
{
	const args = process.argv.slice(2);
	const value = (i, name) => {
		if (i >= args.length) usage(`${name} needs a value`);
		return args[i];
	};
	for (let i = 0; i < args.length; i++) {
		const a = args[i];
		if (a === '--port') opts.port = Number(value(++i, a));
		else if (a === '--api-key') opts.apiKey = value(++i, a);
		else if (a === '--webhook-secret') opts.webhookSecret = value(++i, a);
		else if (a === '--webhook-url') opts.webhookUrl = value(++i, a);
		else if (a === '--detach') opts.detach = true;
		else if (a === '--max-lifetime') opts.maxLifetime = Number(value(++i, a));
		else if (a === '--no-stdin-watch') opts.stdinWatch = false;
		else if (a === '--help' || a === '-h') usage(null);
		else usage(`unknown argument ${a}`);
	}
	if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage('--port must be 0..65535');
	if (opts.apiKey === '') usage('--api-key must not be empty');
	if (opts.maxLifetime === null) opts.maxLifetime = opts.detach ? 0 : 600;
	if (!(opts.maxLifetime >= 0)) usage('--max-lifetime must be a number of seconds >= 0');
	if (opts.webhookUrl !== null) {
		try {
			const u = new URL(opts.webhookUrl);
			if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
		} catch (e) {
			usage(`--webhook-url is not an http(s) URL: ${opts.webhookUrl}`);
		}
	}
}

function usage(problem) {
	const text = 'usage: node demo/mock_provider.js [--port N] [--api-key K] [--webhook-secret whsec_...]\n'
		+ '                                  [--webhook-url URL] [--detach] [--max-lifetime S] [--no-stdin-watch]\n';
	if (problem) {
		process.stderr.write(`mock_provider: ${problem}\n${text}`);
		process.exit(2);
	}
	process.stdout.write(text);
	process.exit(0);
}

let generatedSecret = false;
if (opts.webhookSecret === null) {
	opts.webhookSecret = 'whsec_' + crypto.randomBytes(32).toString('base64');
	generatedSecret = true;
}
let signer;
try {
	signer = new Webhook(opts.webhookSecret);
	signer.sign('msg_check', new Date(), '{}');
} catch (e) {
	usage(`--webhook-secret is not a usable whsec_ secret: ${e.message}`);
}

// ---- stopping by itself
function quit(why, code = 0) {
	process.stderr.write(`mock_provider: exiting (${why})\n`);
	process.exit(code);
}
if (opts.maxLifetime > 0) {
	setTimeout(() => quit(`max lifetime ${opts.maxLifetime}s reached`), opts.maxLifetime * 1000).unref();
}
if (!opts.detach) {
	const parentPid = process.ppid;
	setInterval(() => {
		if (process.ppid !== parentPid) quit('parent process is gone');
	}, 1000).unref();
	if (opts.stdinWatch) {
		process.stdin.on('end', () => quit('stdin closed'));
		process.stdin.on('close', () => quit('stdin closed'));
		process.stdin.on('error', () => quit('stdin error'));
		process.stdin.resume();
	}
}
process.on('SIGTERM', () => quit('SIGTERM'));
process.on('SIGINT', () => quit('SIGINT'));

// ---- state
const sessions = new Map();   // cs id -> session (internal form)
const payments = new Map();   // pi id -> payment
const refunds = new Map();    // re id -> refund
const idem = new Map();       // idempotency key -> {method, path, params, state, status, headers, body, request_id}
const requests = [];
const tossPayments = new Map(); // paymentKey -> Toss Payment (internal form)
const tossIdem = new Map();     // Idempotency-Key -> {path, body, status, answer}
const tossEvents = [];
let tossEventSeq = 0;
const events = [];
let failRules = [];
let requestSeq = 0;
let eventSeq = 0;
let postsWithoutKey = 0;

const MAX_BODY = 1024 * 1024;
const ZERO_DECIMAL = new Set(['bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf',
	'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf']);

function rid(prefix, bytes = 12) {
	// Stripe-like ids: prefix + base62-ish random characters
	return prefix + crypto.randomBytes(bytes).toString('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 24)
		+ crypto.randomBytes(4).toString('hex');
}
const nowSec = () => Math.floor(Date.now() / 1000);
const baseUrl = () => `http://127.0.0.1:${server.address().port}`;

// ---- Stripe-style answers
class ApiError {
	// save: whether an idempotent request saves this answer (false for
	// refusals before the endpoint began executing: auth, validation)
	constructor(status, type, message, { param, code, save = false } = {}) {
		this.status = status;
		this.error = { type, message };
		if (code) this.error.code = code;
		if (param) this.error.param = param;
		this.save = save;
	}
}
const invalid = (message, param, code) => new ApiError(400, 'invalid_request_error', message, { param, code });
const missing = (param) => invalid(`Missing required param: ${param}.`, param, 'parameter_missing');

function jsonAnswer(status, value, extra = {}) {
	return { status, headers: { 'content-type': 'application/json', ...extra }, body: JSON.stringify(value, null, 2) };
}
function errorAnswer(e) {
	return jsonAnswer(e.status, { error: e.error });
}

// ---- form bodies with Stripe's bracket syntax: a[b][0][c]=v
function parseForm(raw) {
	const root = Object.create(null);
	for (const [key, value] of new URLSearchParams(raw)) {
		const m = /^([^[\]]+)((?:\[[^[\]]*\])*)$/.exec(key);
		if (!m) throw invalid(`Invalid parameter name: ${key}`, key);
		const segs = [m[1], ...Array.from(m[2].matchAll(/\[([^[\]]*)\]/g), (x) => x[1])];
		let node = root;
		for (let i = 0; i < segs.length; i++) {
			let s = segs[i];
			if (s === '') s = String(Object.keys(node).length); // a[]=x appends
			const last = i === segs.length - 1;
			if (last) {
				if (typeof node[s] === 'object') throw invalid(`Invalid parameter: ${key} is both a value and a hash`, key);
				node[s] = value;
			} else {
				if (node[s] === undefined) node[s] = Object.create(null);
				else if (typeof node[s] !== 'object') throw invalid(`Invalid parameter: ${key} is both a value and a hash`, key);
				node = node[s];
			}
		}
	}
	return root;
}

function plain(v) {
	// a parsed form value as plain JSON (no null prototypes)
	if (v === null || typeof v !== 'object') return v;
	const o = {};
	for (const k of Object.keys(v)) o[k] = plain(v[k]);
	return o;
}

function canonical(v) {
	if (v === null || typeof v !== 'object') return JSON.stringify(v);
	return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}';
}

// A hash parameter given as an array: keys "0".."n-1"
function asArray(v, name) {
	if (v === undefined) return undefined;
	if (typeof v !== 'object') throw invalid(`Invalid array`, name);
	const keys = Object.keys(v);
	const idx = keys.map(Number);
	if (!keys.every((k) => /^(0|[1-9]\d*)$/.test(k))) throw invalid('Invalid array', name);
	idx.sort((a, b) => a - b);
	if (!idx.every((n, i) => n === i)) throw invalid('Invalid array: indexes must run from 0 without gaps', name);
	return idx.map((i) => v[String(i)]);
}
function asHash(v, name) {
	if (v === undefined) return undefined;
	if (typeof v !== 'object') throw invalid('Invalid object', name);
	return v;
}
function asString(v, name) {
	if (v === undefined) return undefined;
	if (typeof v !== 'string') throw invalid(`Invalid string: ${name} must be a string`, name);
	return v;
}
function asInteger(v, name, { min = null, positive = false } = {}) {
	if (v === undefined) return undefined;
	if (typeof v !== 'string' || !/^-?\d+$/.test(v)) {
		throw invalid(`Invalid ${positive ? 'positive ' : ''}integer: ${typeof v === 'string' ? v : '(a hash)'}`, name);
	}
	const n = Number(v);
	if (!Number.isSafeInteger(n)) throw invalid(`Invalid integer: ${v} is too large`, name);
	if (positive && n <= 0) throw invalid(`Invalid positive integer`, name);
	if (min !== null && n < min) throw invalid(`This value must be greater than or equal to ${min}.`, name);
	return n;
}
function unknownParams(obj, known, ignored, prefix) {
	for (const k of Object.keys(obj)) {
		if (!known.includes(k) && !ignored.includes(k)) {
			const name = prefix ? `${prefix}[${k}]` : k;
			throw invalid(`Received unknown parameter: ${name}`, name);
		}
	}
}
function validMetadata(v, name) {
	const md = asHash(v, name) ?? Object.create(null);
	const keys = Object.keys(md);
	if (keys.length > 50) throw invalid('Metadata can have at most 50 keys.', name);
	const out = {};
	for (const k of keys) {
		if (k.length > 40) throw invalid(`Metadata keys can be at most 40 characters long: ${k}`, `${name}[${k}]`);
		const val = md[k];
		if (typeof val !== 'string') throw invalid('Metadata values must be strings', `${name}[${k}]`);
		if (val.length > 500) throw invalid('Metadata values can be at most 500 characters long', `${name}[${k}]`);
		if (val !== '') out[k] = val; // Stripe: an empty value unsets the key
	}
	return out;
}
function validUrl(v, name) {
	try {
		const u = new URL(v.replace(/\{CHECKOUT_SESSION_ID\}/g, 'cs_x'));
		if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
	} catch (e) {
		throw invalid('Not a valid URL', name, 'url_invalid');
	}
	return v;
}

// ---- checkout sessions
const SESSION_PARAMS = ['mode', 'line_items', 'metadata', 'client_reference_id', 'success_url', 'cancel_url',
	'expires_at', 'payment_intent_data', 'customer_email', 'currency', 'expand', 'locale'];
const SESSION_IGNORED = ['after_expiration', 'allow_promotion_codes', 'automatic_tax', 'billing_address_collection',
	'consent_collection', 'custom_fields', 'custom_text', 'customer', 'customer_creation', 'customer_update',
	'discounts', 'invoice_creation', 'payment_method_collection', 'payment_method_configuration',
	'payment_method_options', 'payment_method_types', 'phone_number_collection', 'redirect_on_completion',
	'return_url', 'saved_payment_method_options', 'setup_intent_data', 'shipping_address_collection',
	'shipping_options', 'submit_type', 'subscription_data', 'tax_id_collection', 'ui_mode', 'adaptive_pricing',
	'optional_items', 'origin_context', 'permissions', 'wallet_options'];
const LINE_PARAMS = ['price_data', 'quantity', 'price'];
const LINE_IGNORED = ['adjustable_quantity', 'dynamic_tax_rates', 'tax_rates', 'optional'];
const PRICE_DATA_PARAMS = ['currency', 'unit_amount', 'product_data', 'unit_amount_decimal', 'product'];
const PRICE_DATA_IGNORED = ['recurring', 'tax_behavior'];
const PRODUCT_DATA_PARAMS = ['name', 'description', 'images', 'metadata', 'tax_code', 'unit_label'];

function createSession(p, arrivedSec) {
	unknownParams(p, SESSION_PARAMS, SESSION_IGNORED, null);
	const mode = asString(p.mode, 'mode');
	if (mode === undefined) throw missing('mode');
	if (!['payment', 'setup', 'subscription'].includes(mode)) {
		throw invalid(`Invalid mode: must be one of payment, setup, or subscription`, 'mode');
	}
	if (mode !== 'payment') throw invalid(`The mock provider supports only mode=payment, not ${mode}`, 'mode');
	const rawLines = asArray(p.line_items, 'line_items');
	if (!rawLines || rawLines.length === 0) {
		throw invalid('`line_items` is required in `payment` mode.', 'line_items', 'parameter_missing');
	}
	if (rawLines.length > 100) throw invalid('You may only specify up to 100 line items.', 'line_items');
	const lines = rawLines.map((li, i) => {
		const n = `line_items[${i}]`;
		asHash(li, n);
		unknownParams(li, LINE_PARAMS, LINE_IGNORED, n);
		if (li.price !== undefined) {
			throw new ApiError(400, 'invalid_request_error', `No such price: '${li.price}'`,
				{ param: `${n}[price]`, code: 'resource_missing' });
		}
		const pd = asHash(li.price_data, `${n}[price_data]`);
		if (pd === undefined) throw missing(`${n}[price_data]`);
		unknownParams(pd, PRICE_DATA_PARAMS, PRICE_DATA_IGNORED, `${n}[price_data]`);
		const currency = asString(pd.currency, `${n}[price_data][currency]`);
		if (currency === undefined) throw missing(`${n}[price_data][currency]`);
		if (!/^[A-Za-z]{3}$/.test(currency)) {
			throw invalid(`Invalid currency: ${currency.toLowerCase()}. Stripe currently supports these currencies: ...`,
				`${n}[price_data][currency]`);
		}
		if (pd.unit_amount_decimal !== undefined) {
			throw invalid('The mock provider supports unit_amount, not unit_amount_decimal',
				`${n}[price_data][unit_amount_decimal]`);
		}
		if (pd.product !== undefined) {
			throw new ApiError(400, 'invalid_request_error', `No such product: '${pd.product}'`,
				{ param: `${n}[price_data][product]`, code: 'resource_missing' });
		}
		const unitAmount = asInteger(pd.unit_amount, `${n}[price_data][unit_amount]`, { min: 0 });
		if (unitAmount === undefined) throw missing(`${n}[price_data][unit_amount]`);
		const prod = asHash(pd.product_data, `${n}[price_data][product_data]`);
		if (prod === undefined) throw missing(`${n}[price_data][product_data]`);
		unknownParams(prod, PRODUCT_DATA_PARAMS, [], `${n}[price_data][product_data]`);
		const name = asString(prod.name, `${n}[price_data][product_data][name]`);
		if (name === undefined || name === '') throw missing(`${n}[price_data][product_data][name]`);
		const quantity = asInteger(li.quantity, `${n}[quantity]`, { positive: true });
		if (quantity === undefined) throw missing(`${n}[quantity]`);
		return { name, currency: currency.toLowerCase(), unit_amount: unitAmount, quantity };
	});
	const currency = lines[0].currency;
	lines.forEach((l, i) => {
		if (l.currency !== currency) {
			throw invalid('All line items must use the same currency.', `line_items[${i}][price_data][currency]`);
		}
	});
	if (p.currency !== undefined && asString(p.currency, 'currency').toLowerCase() !== currency) {
		throw invalid('The currency must match the currency of the line items.', 'currency');
	}
	let total = 0;
	for (const l of lines) {
		total += l.unit_amount * l.quantity;
		if (!Number.isSafeInteger(total) || total > 99999999999) throw invalid('Amount is too large.', 'line_items');
	}
	const successUrl = asString(p.success_url, 'success_url');
	if (successUrl === undefined) throw missing('success_url');
	validUrl(successUrl, 'success_url');
	const cancelUrl = asString(p.cancel_url, 'cancel_url');
	if (cancelUrl !== undefined) validUrl(cancelUrl, 'cancel_url');
	const ref = asString(p.client_reference_id, 'client_reference_id');
	if (ref !== undefined && (ref.length === 0 || ref.length > 200)) {
		throw invalid('client_reference_id must be 1 to 200 characters long', 'client_reference_id');
	}
	const metadata = validMetadata(p.metadata, 'metadata');
	const pid = asHash(p.payment_intent_data, 'payment_intent_data');
	if (pid !== undefined) unknownParams(pid, ['metadata', 'description'], ['capture_method', 'receipt_email',
		'setup_future_usage', 'shipping', 'statement_descriptor', 'statement_descriptor_suffix', 'transfer_data',
		'transfer_group', 'application_fee_amount', 'on_behalf_of'], 'payment_intent_data');
	const piMetadata = pid ? validMetadata(pid.metadata, 'payment_intent_data[metadata]') : {};
	let expiresAt = asInteger(p.expires_at, 'expires_at');
	if (expiresAt === undefined) expiresAt = arrivedSec + 86400;
	if (expiresAt < arrivedSec + 30 * 60) {
		throw invalid('The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.',
			'expires_at');
	}
	if (expiresAt > arrivedSec + 24 * 3600) {
		throw invalid('The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.',
			'expires_at');
	}
	const s = {
		id: rid('cs_mock_'),
		created: arrivedSec,
		mode,
		status: 'open',
		payment_status: 'unpaid',
		amount_total: total,
		currency,
		expires_at: expiresAt,
		metadata,
		client_reference_id: ref ?? null,
		customer_email: asString(p.customer_email, 'customer_email') ?? null,
		success_url: successUrl,
		cancel_url: cancelUrl ?? null,
		payment_intent: null,
		payment_intent_metadata: piMetadata,
		line_items: lines,
	};
	sessions.set(s.id, s);
	return s;
}

function sessionJson(s) {
	return {
		id: s.id,
		object: 'checkout.session',
		amount_subtotal: s.amount_total,
		amount_total: s.amount_total,
		cancel_url: s.cancel_url,
		client_reference_id: s.client_reference_id,
		created: s.created,
		currency: s.currency,
		customer_email: s.customer_email,
		expires_at: s.expires_at,
		livemode: false,
		metadata: s.metadata,
		mode: s.mode,
		payment_intent: s.payment_intent,
		payment_status: s.payment_status,
		status: s.status,
		success_url: s.success_url,
		url: s.status === 'open' ? `${baseUrl()}/pay/${s.id}` : null,
	};
}

function lineItemsJson(s) {
	return {
		object: 'list',
		data: s.line_items.map((l, i) => ({
			id: `li_mock_${s.id.slice(8)}_${i}`,
			object: 'item',
			amount_subtotal: l.unit_amount * l.quantity,
			amount_total: l.unit_amount * l.quantity,
			currency: l.currency,
			description: l.name,
			quantity: l.quantity,
			price: { object: 'price', currency: l.currency, unit_amount: l.unit_amount, type: 'one_time' },
		})),
		has_more: false,
		url: `/v1/checkout/sessions/${s.id}/line_items`,
	};
}

function noSuch(kind, id, param) {
	return new ApiError(404, 'invalid_request_error', `No such ${kind}: '${id}'`,
		{ param, code: 'resource_missing', save: true });
}

// ---- the buyer's side: pay, cancel, expire
function eventData(s) {
	return {
		order_id: s.metadata.order_id ?? null,
		amount: s.amount_total,
		currency: s.currency.toUpperCase(),
		payment_id: s.payment_intent,
		session_id: s.id,
	};
}

function paySession(s) {
	expireDue();
	if (s.status !== 'open') return { error: `This checkout session is ${s.status}: it cannot be paid.` };
	const pi = rid('pi_mock_');
	payments.set(pi, {
		id: pi,
		object: 'payment_intent',
		amount: s.amount_total,
		amount_received: s.amount_total,
		amount_refunded: 0,
		currency: s.currency,
		status: 'succeeded',
		latest_charge: rid('ch_mock_'),
		metadata: s.payment_intent_metadata,
		created: nowSec(),
		checkout_session: s.id,
	});
	s.status = 'complete';
	s.payment_status = 'paid';
	s.payment_intent = pi;
	const event = emit('payment.succeeded', eventData(s));
	return { session: s, event };
}

function cancelSession(s, why) {
	expireDue();
	if (s.status !== 'open') return { error: `This checkout session is ${s.status}: it cannot be cancelled.` };
	s.status = 'expired';
	s.expired_reason = why;
	const event = emit('payment.cancelled', eventData(s));
	return { session: s, event };
}

function expireDue() {
	const now = nowSec();
	for (const s of sessions.values()) {
		if (s.status === 'open' && s.expires_at <= now) {
			s.status = 'expired';
			s.expired_reason = 'expires_at passed';
			emit('payment.cancelled', eventData(s));
		}
	}
}
setInterval(expireDue, 1000).unref();

// ---- webhook events
function signedHeaders(id, body, at) {
	return {
		'webhook-id': id,
		'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
		'webhook-signature': signer.sign(id, at, body),
	};
}

function emit(type, data) {
	const id = rid('msg_mock_');
	const at = new Date();
	const body = JSON.stringify({ type, timestamp: at.toISOString(), data });
	const ev = { seq: ++eventSeq, id, type, headers: signedHeaders(id, body, at), body, created_ms: at.getTime(),
		deliveries: [] };
	events.push(ev);
	if (opts.webhookUrl) deliver(ev, 1);
	return ev;
}

const DELIVERY_ATTEMPTS = 5;
async function deliver(ev, attempt) {
	const headers = { 'content-type': 'application/json', 'user-agent': 'shop-mock-provider/1',
		...signedHeaders(ev.id, ev.body, new Date()) };
	const d = { attempt, at_ms: Date.now(), status: null, error: null };
	ev.deliveries.push(d);
	try {
		const r = await fetch(opts.webhookUrl, { method: 'POST', headers, body: ev.body,
			signal: AbortSignal.timeout(10000), redirect: 'manual' });
		d.status = r.status;
		await r.arrayBuffer().catch(() => {});
		if (r.status >= 200 && r.status < 300) return;
	} catch (e) {
		d.error = e.cause?.code ?? e.name ?? String(e);
	}
	if (attempt < DELIVERY_ATTEMPTS) setTimeout(() => deliver(ev, attempt + 1), 1000 * 2 ** (attempt - 1)).unref();
}

// ---- refunds
const REFUND_PARAMS = ['payment_intent', 'charge', 'amount', 'metadata', 'reason', 'expand'];
const REFUND_IGNORED = ['refund_application_fee', 'reverse_transfer', 'instructions_email', 'origin', 'customer',
	'currency'];

function createRefund(p) {
	unknownParams(p, REFUND_PARAMS, REFUND_IGNORED, null);
	const piId = asString(p.payment_intent, 'payment_intent');
	const charge = asString(p.charge, 'charge');
	if (piId === undefined && charge === undefined) {
		throw invalid('One of the following params should be provided for this request: payment_intent or charge.',
			'payment_intent', 'parameter_missing');
	}
	const amount = asInteger(p.amount, 'amount', { positive: true });
	const metadata = validMetadata(p.metadata, 'metadata');
	const reason = asString(p.reason, 'reason');
	if (reason !== undefined && !['duplicate', 'fraudulent', 'requested_by_customer'].includes(reason)) {
		throw invalid('Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer', 'reason');
	}
	// from here on the endpoint executes: its answers are saved for the key
	let pay;
	if (piId !== undefined) {
		pay = payments.get(piId);
		if (!pay) {
			throw new ApiError(400, 'invalid_request_error', `No such payment_intent: '${piId}'`,
				{ param: 'payment_intent', code: 'resource_missing', save: true });
		}
	} else {
		pay = [...payments.values()].find((x) => x.latest_charge === charge);
		if (!pay) {
			throw new ApiError(400, 'invalid_request_error', `No such charge: '${charge}'`,
				{ param: 'charge', code: 'resource_missing', save: true });
		}
	}
	const left = pay.amount_received - pay.amount_refunded;
	if (left <= 0) {
		throw new ApiError(400, 'invalid_request_error', `Charge ${pay.latest_charge} has already been refunded.`,
			{ code: 'charge_already_refunded', save: true });
	}
	const amt = amount ?? left;
	if (amt > left) {
		throw new ApiError(400, 'invalid_request_error',
			`Refund amount (${amt} ${pay.currency}) is greater than unrefunded amount on charge (${left} ${pay.currency})`,
			{ param: 'amount', code: 'amount_too_large', save: true });
	}
	pay.amount_refunded += amt;
	const r = {
		id: rid('re_mock_'),
		object: 'refund',
		amount: amt,
		charge: pay.latest_charge,
		created: nowSec(),
		currency: pay.currency,
		metadata,
		payment_intent: pay.id,
		reason: reason ?? null,
		status: 'succeeded',
	};
	refunds.set(r.id, r);
	return r;
}

// ---- authentication
function authOf(req) {
	const h = req.headers.authorization;
	if (h === undefined) return { kind: null, ok: false };
	let m = /^Bearer\s+(\S+)\s*$/i.exec(h);
	if (m) return { kind: 'bearer', ok: safeEqual(m[1], opts.apiKey), given: m[1] };
	m = /^Basic\s+(\S+)\s*$/i.exec(h);
	if (m) {
		const user = Buffer.from(m[1], 'base64').toString('utf8').replace(/:.*$/s, '');
		return { kind: 'basic', ok: safeEqual(user, opts.apiKey), given: user };
	}
	return { kind: 'other', ok: false };
}
function safeEqual(a, b) {
	const x = crypto.createHash('sha256').update(a).digest();
	const y = crypto.createHash('sha256').update(b).digest();
	return crypto.timingSafeEqual(x, y) && a === b;
}
function authError(auth) {
	if (auth.kind === null) {
		return new ApiError(401, 'invalid_request_error', 'You did not provide an API key. You need to provide your '
			+ "API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').");
	}
	if (auth.kind === 'other') {
		return new ApiError(401, 'invalid_request_error',
			'Invalid Authorization header: use Bearer auth (Authorization: Bearer YOUR_SECRET_KEY).');
	}
	const g = auth.given ?? '';
	const masked = g.length > 8 ? `${g.slice(0, Math.min(8, g.length - 4))}${'*'.repeat(4)}${g.slice(-4)}` : '****';
	return new ApiError(401, 'invalid_request_error', `Invalid API Key provided: ${masked}`);
}

// ---- the API: route one request to {status, headers, body}
// Returns either an answer or, for idempotent POSTs, runs the endpoint and
// saves its answer.
function route(method, p) {
	let m;
	if (p === '/v1/checkout/sessions' && method === 'POST') return { op: 'create_session' };
	if ((m = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(p)) && method === 'GET') return { op: 'get_session', id: m[1] };
	if ((m = /^\/v1\/checkout\/sessions\/([^/]+)\/line_items$/.exec(p)) && method === 'GET') return { op: 'line_items', id: m[1] };
	if ((m = /^\/v1\/checkout\/sessions\/([^/]+)\/expire$/.exec(p)) && method === 'POST') return { op: 'expire', id: m[1] };
	if (p === '/v1/refunds' && method === 'POST') return { op: 'create_refund' };
	if ((m = /^\/v1\/refunds\/([^/]+)$/.exec(p)) && method === 'GET') return { op: 'get_refund', id: m[1] };
	if ((m = /^\/v1\/payment_intents\/([^/]+)$/.exec(p)) && method === 'GET') return { op: 'get_pi', id: m[1] };
	return null;
}

function execute(r, params, arrivedSec) {
	expireDue();
	switch (r.op) {
	case 'create_session':
		return jsonAnswer(200, sessionJson(createSession(params, arrivedSec)));
	case 'get_session': {
		const s = sessions.get(r.id);
		if (!s) throw noSuch('checkout.session', r.id, 'session');
		return jsonAnswer(200, sessionJson(s));
	}
	case 'line_items': {
		const s = sessions.get(r.id);
		if (!s) throw noSuch('checkout.session', r.id, 'session');
		return jsonAnswer(200, lineItemsJson(s));
	}
	case 'expire': {
		unknownParams(params, ['expand'], [], null);
		const s = sessions.get(r.id);
		if (!s) throw noSuch('checkout.session', r.id, 'session');
		if (s.status !== 'open') {
			throw new ApiError(400, 'invalid_request_error',
				`You can only expire sessions that are open. This session is ${s.status}.`,
				{ code: 'checkout_session_not_open', save: true });
		}
		s.status = 'expired';
		s.expired_reason = 'expired by the API';
		emit('payment.cancelled', eventData(s));
		return jsonAnswer(200, sessionJson(s));
	}
	case 'create_refund':
		return jsonAnswer(200, createRefund(params));
	case 'get_refund': {
		const x = refunds.get(r.id);
		if (!x) throw noSuch('refund', r.id, 'id');
		return jsonAnswer(200, x);
	}
	case 'get_pi': {
		const x = payments.get(r.id);
		if (!x) throw noSuch('payment_intent', r.id, 'intent');
		const { checkout_session, amount_refunded, ...pi } = x; // mock-only fields stay in /_state
		return jsonAnswer(200, pi);
	}
	default:
		throw new Error(`no operation ${r.op}`);
	}
}

// An API request, after failure injection decided it reaches the API.
// Returns {answer, replayed, inProgress?: Promise}.
function api(req, entry, rawBody) {
	const method = req.method;
	const p = entry.path;
	const requestId = rid('req_mock_', 8);
	const withId = (a) => ({ ...a, headers: { ...a.headers, 'request-id': requestId } });
	const auth = authOf(req);
	if (!auth.ok) return { answer: withId(errorAnswer(authError(auth))) };
	const r = route(method, p);
	if (!r) {
		return { answer: withId(errorAnswer(new ApiError(404, 'invalid_request_error',
			`Unrecognized request URL (${method}: ${p}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`))) };
	}
	let params = Object.create(null);
	if (rawBody.length > 0) {
		const ct = (req.headers['content-type'] ?? '').toLowerCase();
		if (!ct.startsWith('application/x-www-form-urlencoded')) {
			return { answer: withId(errorAnswer(invalid('Invalid request: Stripe\'s API takes form-encoded bodies '
				+ '(Content-Type: application/x-www-form-urlencoded), not ' + (ct || 'a body without Content-Type') + '.'))) };
		}
		try {
			params = parseForm(rawBody);
		} catch (e) {
			if (e instanceof ApiError) return { answer: withId(errorAnswer(e)) };
			throw e;
		}
	}
	const key = method === 'POST' ? entry.idempotency_key : null;
	if (key !== null && key.length > 255) {
		return { answer: withId(errorAnswer(invalid('Idempotency keys can be at most 255 characters long.'))) };
	}
	const canon = canonical(plain(params));
	if (key !== null) {
		const saved = idem.get(key);
		if (saved) {
			if (saved.method !== method || saved.path !== p) {
				return { answer: withId(errorAnswer(new ApiError(400, 'idempotency_error',
					`Keys for idempotent requests can only be used for the same endpoint they were first used for `
					+ `('${saved.method} ${saved.path}' vs '${method} ${p}'). Try using a key other than '${key}' `
					+ 'if you meant to execute a different request.'))) };
			}
			if (saved.params !== canon) {
				return { answer: withId(errorAnswer(new ApiError(400, 'idempotency_error',
					'Keys for idempotent requests can only be used with the same parameters they were first used '
					+ `with. Try using a key other than '${key}' if you meant to execute a different request.`))) };
			}
			if (saved.state === 'in_progress') {
				return { answer: withId(errorAnswer(new ApiError(409, 'idempotency_error',
					'There is currently another in-progress request using this Idempotent Key (that probably means '
					+ 'you submitted twice, and the other request is still going through): ' + key
					+ '. Please try again later.'))) };
			}
			return { answer: { status: saved.status, body: saved.body,
				headers: { ...saved.headers, 'request-id': requestId, 'idempotent-replayed': 'true',
					'original-request': saved.request_id } }, replayed: true };
		}
	}
	let answer;
	try {
		answer = execute(r, params, entry.arrived_sec);
	} catch (e) {
		if (!(e instanceof ApiError)) throw e;
		answer = errorAnswer(e);
		if (!e.save) return { answer: withId(answer) };
	}
	answer = withId(answer);
	if (key !== null) {
		idem.set(key, { method, path: p, params: canon, state: 'done', status: answer.status, headers: answer.headers,
			body: answer.body, request_id: requestId, created_ms: Date.now() });
	}
	return { answer };
}

// Mark a key in progress (slow mode without "process"): a concurrent
// request with it gets 409 until the first one executes.
function reserveKey(req, entry, rawBody) {
	const key = entry.idempotency_key;
	if (req.method !== 'POST' || key === null || idem.has(key) || !authOf(req).ok) return () => {};
	let canon;
	try {
		canon = canonical(plain(rawBody.length ? parseForm(rawBody) : {}));
	} catch (e) {
		return () => {};
	}
	idem.set(key, { method: req.method, path: entry.path, params: canon, state: 'in_progress' });
	return () => {
		if (idem.get(key)?.state === 'in_progress') idem.delete(key);
	};
}

// ---- the hosted payment page
function esc(s) {
	return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
function money(amount, currency) {
	if (ZERO_DECIMAL.has(currency)) return `${amount.toLocaleString('en-US')} ${currency.toUpperCase()}`;
	return `${(amount / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })} ${currency.toUpperCase()}`;
}
function htmlPage(status, title, inner) {
	const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.3rem; } table { width: 100%; border-collapse: collapse; margin: 1rem 0; }
td, th { padding: .4rem; border-bottom: 1px solid #ddd; text-align: left; } td.n, th.n { text-align: right; }
tfoot td { font-weight: bold; border-bottom: none; } .note { color: #666; font-size: .9rem; }
form { display: inline-block; margin-right: .5rem; } button { font-size: 1rem; padding: .5rem 1.2rem; cursor: pointer; }
button.pay { background: #635bff; color: #fff; border: none; border-radius: 4px; }
button.cancel { background: #fff; border: 1px solid #999; border-radius: 4px; }
</style></head><body>
${inner}
<p class="note">Mock payment provider (shop demo): no real payment is made.</p>
</body></html>
`;
	return { status, headers: { 'content-type': 'text/html; charset=utf-8' }, body };
}
function payPage(s) {
	const rows = s.line_items.map((l) => `<tr><td>${esc(l.name)}</td><td class="n">${l.quantity}</td>`
		+ `<td class="n">${esc(money(l.unit_amount, l.currency))}</td>`
		+ `<td class="n">${esc(money(l.unit_amount * l.quantity, l.currency))}</td></tr>`).join('\n');
	const ref = s.metadata.order_id !== undefined ? ` for order ${esc(s.metadata.order_id)}` : '';
	let actions;
	if (s.status === 'open') {
		actions = `<form method="post" action="/pay/${esc(s.id)}/pay"><button class="pay" type="submit">Pay ${esc(money(s.amount_total, s.currency))}</button></form>
<form method="post" action="/pay/${esc(s.id)}/cancel"><button class="cancel" type="submit">Cancel</button></form>
<p class="note">This checkout expires at ${esc(new Date(s.expires_at * 1000).toISOString())}.</p>`;
	} else if (s.status === 'complete') {
		actions = `<p><strong>Paid</strong> (${esc(s.payment_intent)}).</p>`;
	} else {
		actions = '<p><strong>This checkout has expired</strong>: nothing was paid.</p>';
	}
	return htmlPage(200, `Pay${ref}`, `<h1>Checkout${ref}</h1>
<table><thead><tr><th>Item</th><th class="n">Qty</th><th class="n">Price</th><th class="n">Amount</th></tr></thead>
<tbody>
${rows}
</tbody>
<tfoot><tr><td colspan="3">Total</td><td class="n">${esc(money(s.amount_total, s.currency))}</td></tr></tfoot></table>
${actions}`);
}
function redirectTo(url, s) {
	return { status: 303, headers: { location: url.replace(/\{CHECKOUT_SESSION_ID\}/g, s.id),
		'content-type': 'text/plain' }, body: 'See Other' };
}

function hosted(method, p) {
	let m;
	if ((m = /^\/pay\/([^/]+)$/.exec(p)) && method === 'GET') {
		const s = sessions.get(m[1]);
		expireDue();
		if (!s) return htmlPage(404, 'Not found', '<h1>No such checkout</h1>');
		return payPage(s);
	}
	if ((m = /^\/pay\/([^/]+)\/(pay|cancel)$/.exec(p)) && method === 'POST') {
		const s = sessions.get(m[1]);
		if (!s) return htmlPage(404, 'Not found', '<h1>No such checkout</h1>');
		const r = m[2] === 'pay' ? paySession(s) : cancelSession(s, 'cancelled by the buyer');
		if (r.error) return htmlPage(400, 'Checkout closed', `<h1>${esc(r.error)}</h1>`);
		if (m[2] === 'pay') return redirectTo(s.success_url, s);
		if (s.cancel_url) return redirectTo(s.cancel_url, s);
		return htmlPage(200, 'Cancelled', '<h1>Payment cancelled</h1><p>Nothing was paid.</p>');
	}
	return htmlPage(404, 'Not found', '<h1>Not found</h1>');
}

// ---- Toss Payments
function tossError(status, code, message) {
	return jsonAnswer(status, { code, message });
}
function tossJson(x) {
	const { reject, captures, confirm_calls, ...payment } = x;
	return payment;
}
function tossState(x) {
	return { ...tossJson(x), captures: x.captures, confirm_calls: x.confirm_calls };
}
function tossEmit(x) {
	tossEvents.push({ seq: ++tossEventSeq, body: JSON.stringify({ eventType: 'PAYMENT_STATUS_CHANGED',
		createdAt: new Date().toISOString().replace('Z', ''), data: tossJson(x) }) });
}
function tossAuthorize(orderId, amount, reject = null, orderName = null) {
	const paymentKey = 'tgen_' + crypto.randomBytes(15).toString('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 20)
		+ crypto.randomBytes(3).toString('hex');
	const x = {
		mId: 'tosspayments_mock', version: '2022-11-16', lastTransactionKey: null, paymentKey, orderId,
		orderName: orderName ?? `order ${orderId}`, currency: 'KRW', method: '카드', status: 'IN_PROGRESS',
		requestedAt: new Date().toISOString(), approvedAt: null, totalAmount: amount, balanceAmount: amount,
		suppliedAmount: amount - Math.floor(amount / 11), vat: Math.floor(amount / 11), taxFreeAmount: 0,
		cancels: null, failure: null, type: 'NORMAL', country: 'KR', isPartialCancelable: true,
		reject, captures: 0, confirm_calls: 0,
	};
	tossPayments.set(paymentKey, x);
	return x;
}
const validOrderId = (v) => typeof v === 'string' && /^[A-Za-z0-9_-]{6,64}$/.test(v);

function tossExecute(method, p, body) {
	let m;
	if (p === '/v1/payments/confirm' && method === 'POST') {
		if (typeof body.paymentKey !== 'string' || !validOrderId(body.orderId) || !Number.isInteger(body.amount)) {
			return tossError(400, 'INVALID_REQUEST', '잘못된 요청입니다. (paymentKey, orderId of 6-64 characters, integer amount)');
		}
		const x = tossPayments.get(body.paymentKey);
		if (!x) return tossError(404, 'NOT_FOUND_PAYMENT_SESSION', '결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.');
		x.confirm_calls++;
		if (x.orderId !== body.orderId || x.totalAmount !== body.amount) {
			return tossError(400, 'INVALID_REQUEST', `잘못된 요청입니다. (orderId or amount is not the authorised ${x.orderId} / ${x.totalAmount})`);
		}
		if (x.status !== 'IN_PROGRESS') return tossError(400, 'ALREADY_PROCESSED_PAYMENT', '이미 처리된 결제 입니다.');
		if (x.reject) {
			x.status = 'ABORTED';
			x.failure = { code: x.reject, message: '결제가 거절되었습니다.' };
			tossEmit(x);
			return tossError(403, x.reject, '한도초과 혹은 잔액부족으로 결제에 실패했습니다.');
		}
		x.status = 'DONE';
		x.approvedAt = new Date().toISOString();
		x.lastTransactionKey = crypto.randomBytes(16).toString('hex').toUpperCase();
		x.captures++;
		tossEmit(x);
		return jsonAnswer(200, tossJson(x));
	}
	if ((m = /^\/v1\/payments\/([^/]+)\/cancel$/.exec(p)) && method === 'POST') {
		const x = tossPayments.get(decodeURIComponent(m[1]));
		if (!x) return tossError(404, 'NOT_FOUND_PAYMENT', '존재하지 않는 결제 정보 입니다.');
		if (typeof body.cancelReason !== 'string' || body.cancelReason === '' || body.cancelReason.length > 200) {
			return tossError(400, 'INVALID_REQUEST', '잘못된 요청입니다. (cancelReason is required, at most 200 characters)');
		}
		if (x.status !== 'DONE' && x.status !== 'PARTIAL_CANCELED') {
			return tossError(400, 'NOT_CANCELABLE_PAYMENT', '취소 할 수 없는 결제 입니다.');
		}
		const amount = body.cancelAmount ?? x.balanceAmount;
		if (!Number.isInteger(amount) || amount <= 0 || amount > x.balanceAmount) {
			return tossError(400, 'NOT_CANCELABLE_AMOUNT', '취소 할 수 없는 금액 입니다.');
		}
		x.balanceAmount -= amount;
		x.status = x.balanceAmount === 0 ? 'CANCELED' : 'PARTIAL_CANCELED';
		x.cancels = x.cancels ?? [];
		const transactionKey = crypto.randomBytes(16).toString('hex').toUpperCase();
		x.lastTransactionKey = transactionKey;
		x.cancels.push({ transactionKey, cancelReason: body.cancelReason, cancelAmount: amount,
			taxFreeAmount: 0, refundableAmount: x.balanceAmount, canceledAt: new Date().toISOString(),
			cancelStatus: 'DONE' });
		tossEmit(x);
		return jsonAnswer(200, tossJson(x));
	}
	if ((m = /^\/v1\/payments\/([^/]+)$/.exec(p)) && method === 'GET') {
		const x = tossPayments.get(decodeURIComponent(m[1]));
		if (!x) return tossError(404, 'NOT_FOUND_PAYMENT', '존재하지 않는 결제 정보 입니다.');
		return jsonAnswer(200, tossJson(x));
	}
	return tossError(404, 'NOT_FOUND', `존재하지 않는 정보 입니다. (${method} ${p})`);
}

function tossApi(req, entry, rawBody) {
	const auth = authOf(req);
	if (auth.kind !== 'basic' || !auth.ok) {
		return { answer: tossError(401, 'UNAUTHORIZED_KEY', '인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.') };
	}
	let body = {};
	if (req.method === 'POST') {
		const ct = (req.headers['content-type'] ?? '').toLowerCase();
		try {
			if (!ct.startsWith('application/json')) throw new Error('not JSON');
			body = rawBody === '' ? {} : JSON.parse(rawBody);
			if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object');
		} catch (e) {
			return { answer: tossError(400, 'INVALID_REQUEST', '잘못된 요청입니다. (a JSON object body with Content-Type: application/json)') };
		}
	}
	const key = req.method === 'POST' ? entry.idempotency_key : null;
	if (key !== null && key.length > 300) {
		return { answer: tossError(400, 'INVALID_REQUEST', '잘못된 요청입니다. (Idempotency-Key is at most 300 characters)') };
	}
	const canon = canonical(body);
	if (key !== null && tossIdem.has(key)) {
		const saved = tossIdem.get(key);
		if (saved.path !== entry.path || saved.body !== canon) {
			return { answer: tossError(422, 'IDEMPOTENCY_KEY_REUSED',
				`Idempotency-Key ${key} was used with another request.`) };
		}
		return { answer: saved.answer, replayed: true };
	}
	const answer = tossExecute(req.method, entry.path, body);
	if (key !== null) tossIdem.set(key, { path: entry.path, body: canon, answer });
	return { answer };
}

function tossWidget(method, p, query, rawBody) {
	if (p === '/toss/widget' && method === 'GET') {
		const q = query;
		const amount = Number(q.get('amount'));
		const fields = ['orderId', 'amount', 'orderName', 'successUrl', 'failUrl']
			.map((k) => `<input type="hidden" name="${k}" value="${esc(q.get(k) ?? '')}">`).join('');
		if (!validOrderId(q.get('orderId')) || !Number.isInteger(amount) || amount <= 0 || !q.get('successUrl')) {
			return htmlPage(400, 'Bad request', '<h1>orderId (6-64 characters), amount and successUrl are required</h1>');
		}
		return htmlPage(200, `Pay ${q.get('orderId')}`, `<h1>${esc(q.get('orderName') ?? q.get('orderId'))}</h1>
<p>Total: ${esc(money(amount, 'krw'))}</p>
<form method="post" action="/toss/widget/pay">${fields}<button class="pay" type="submit">Pay</button></form>
<form method="post" action="/toss/widget/cancel">${fields}<button class="cancel" type="submit">Cancel</button></form>`);
	}
	if ((p === '/toss/widget/pay' || p === '/toss/widget/cancel') && method === 'POST') {
		const f = new URLSearchParams(rawBody);
		const amount = Number(f.get('amount'));
		if (!validOrderId(f.get('orderId')) || !Number.isInteger(amount) || amount <= 0 || !f.get('successUrl')) {
			return htmlPage(400, 'Bad request', '<h1>Bad widget request</h1>');
		}
		let target;
		if (p === '/toss/widget/pay') {
			const x = tossAuthorize(f.get('orderId'), amount, null, f.get('orderName'));
			target = new URL(f.get('successUrl'));
			target.searchParams.set('paymentKey', x.paymentKey);
			target.searchParams.set('orderId', x.orderId);
			target.searchParams.set('amount', String(amount));
		} else {
			if (!f.get('failUrl')) return htmlPage(200, 'Cancelled', '<h1>Payment cancelled</h1>');
			target = new URL(f.get('failUrl'));
			target.searchParams.set('code', 'PAY_PROCESS_CANCELED');
			target.searchParams.set('message', '사용자에 의해 결제가 취소되었습니다.');
			target.searchParams.set('orderId', f.get('orderId'));
		}
		return { status: 303, headers: { location: target.toString(), 'content-type': 'text/plain' }, body: 'See Other' };
	}
	return htmlPage(404, 'Not found', '<h1>Not found</h1>');
}

// ---- request plumbing
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

function send(res, a) {
	if (res.destroyed) return;
	const body = Buffer.from(a.body ?? '', 'utf8');
	res.writeHead(a.status, { ...a.headers, 'content-length': body.length });
	res.end(body);
}

function sendJson(res, status, value) {
	send(res, jsonAnswer(status, value));
}

function takeFailure(method, p) {
	for (const rule of failRules) {
		if (rule.left > 0 && p.startsWith(rule.path) && (rule.method === null || rule.method === method)) {
			rule.left--;
			rule.used++;
			return rule;
		}
	}
	return null;
}

function failureAnswer(rule) {
	const headers = { 'content-type': 'application/json' };
	if (rule.retry_after !== null) headers['retry-after'] = String(rule.retry_after);
	let body = rule.body;
	if (body === null) {
		const type = rule.status >= 500 ? 'api_error' : 'invalid_request_error';
		const message = rule.message
			?? (rule.status === 429 ? 'Too many requests hit the API too quickly (mock: injected).'
				: `Injected failure: status ${rule.status} (mock provider /_fail).`);
		const error = { type, message };
		if (rule.status === 429) error.code = 'rate_limit';
		body = JSON.stringify({ error });
	}
	return { status: rule.status, headers, body };
}

async function external(req, res, url) {
	const p = url.pathname;
	const arrived = Date.now();
	let rawBody;
	try {
		rawBody = (await readBody(req, MAX_BODY)).toString('utf8');
	} catch (e) {
		if (!res.destroyed) sendJson(res, 413, { error: { type: 'invalid_request_error', message: e.message } });
		return;
	}
	const auth = authOf(req);
	const headers = { ...req.headers };
	if (headers.authorization !== undefined) headers.authorization = '[redacted]';
	let form = null;
	const ct = (req.headers['content-type'] ?? '').toLowerCase();
	if (rawBody.length > 0 && ct.startsWith('application/x-www-form-urlencoded')) {
		try {
			form = plain(parseForm(rawBody));
		} catch (e) {
			form = null;
		}
	}
	const entry = {
		seq: ++requestSeq,
		method: req.method,
		path: p,
		query: url.search,
		headers,
		idempotency_key: req.headers['idempotency-key'] ?? null,
		authorization: auth.kind,
		auth_ok: auth.ok,
		content_type: req.headers['content-type'] ?? null,
		raw_body: rawBody,
		form,
		received_ms: arrived,
		arrived_sec: Math.floor(arrived / 1000),
		answer: null,
		replayed: false,
		failure: null,
		answered_ms: null,
	};
	requests.push(entry);
	if (req.method === 'POST' && p.startsWith('/v1/') && entry.idempotency_key === null) postsWithoutKey++;
	const answered = (what) => {
		if (entry.answer === null) {
			entry.answer = what;
			entry.answered_ms = Date.now();
		}
	};
	res.on('close', () => {
		if (!res.writableFinished) answered('aborted');
	});

	const run = () => {
		if (p.startsWith('/v1/payments/')) {
			const r = tossApi(req, entry, rawBody);
			entry.replayed = !!r.replayed;
			return r.answer;
		}
		if (p.startsWith('/toss/')) return tossWidget(req.method, p, url.searchParams, rawBody);
		if (p.startsWith('/v1/')) {
			const r = api(req, entry, rawBody);
			entry.replayed = !!r.replayed;
			return r.answer;
		}
		return hosted(req.method, p);
	};
	const rule = takeFailure(req.method, p);
	if (rule) entry.failure = rule.mode;
	if (!rule) {
		const a = run();
		answered(a.status);
		send(res, a);
		return;
	}
	switch (rule.mode) {
	case 'refuse':
		if (rule.process) run();
		answered('refused');
		if (typeof req.socket.resetAndDestroy === 'function') req.socket.resetAndDestroy();
		else req.socket.destroy();
		return;
	case 'hang':
		if (rule.process) run();
		answered('hung');
		return; // never answered; the socket stays open until the client gives up
	case 'status': {
		if (rule.process) run();
		const a = failureAnswer(rule);
		answered(a.status);
		send(res, a);
		return;
	}
	case 'slow': {
		if (rule.process !== false) {
			const a = run();
			const t = setTimeout(() => {
				answered(a.status);
				send(res, a);
			}, rule.delay_ms);
			res.on('close', () => clearTimeout(t));
			return;
		}
		const release = reserveKey(req, entry, rawBody);
		setTimeout(() => {
			release();
			const a = run(); // the provider acts even when the client has gone
			answered(res.destroyed ? 'aborted' : a.status);
			send(res, a);
		}, rule.delay_ms);
		return;
	}
	default:
		throw new Error(`unknown failure mode ${rule.mode}`);
	}
}

// ---- control API
function sessionState(s) {
	return { ...sessionJson(s), line_items: s.line_items.map((l) => ({ ...l })),
		expired_reason: s.expired_reason ?? null };
}

async function control(req, res, url) {
	const p = url.pathname;
	const bodyJson = async () => {
		const raw = (await readBody(req, 1024 * 1024)).toString('utf8');
		return raw === '' ? {} : JSON.parse(raw);
	};
	const q = url.searchParams;
	if (req.method === 'GET' && p === '/_health') {
		return sendJson(res, 200, { ok: true, port: server.address().port, pid: process.pid });
	}
	if (req.method === 'GET' && p === '/_requests') {
		const since = Number(q.get('since') ?? 0);
		const prefix = q.get('path');
		return sendJson(res, 200, requests.filter((e) => e.seq > since && (prefix === null || e.path.startsWith(prefix)))
			.map(({ arrived_sec, ...e }) => e));
	}
	if (p === '/_fail' && req.method === 'GET') return sendJson(res, 200, failRules);
	if (p === '/_fail' && req.method === 'POST') {
		const b = await bodyJson();
		if (b.clear) {
			failRules = [];
			return sendJson(res, 200, { rules: [] });
		}
		const modes = ['refuse', 'hang', 'status', 'slow'];
		if (typeof b.path !== 'string' || !b.path.startsWith('/') || !modes.includes(b.mode)) {
			return sendJson(res, 400, { error: `need {"path": "/...", "mode": ${modes.map((x) => `"${x}"`).join(' | ')}}` });
		}
		const times = b.times ?? 1;
		const status = b.status ?? 500;
		if (!Number.isInteger(times) || times < 1) return sendJson(res, 400, { error: 'times must be an integer >= 1' });
		if (!Number.isInteger(status) || status < 100 || status > 599) return sendJson(res, 400, { error: 'status must be 100..599' });
		if (b.retry_after !== undefined && b.retry_after !== null && typeof b.retry_after !== 'number'
			&& typeof b.retry_after !== 'string') return sendJson(res, 400, { error: 'retry_after: seconds or an HTTP date' });
		if (b.body !== undefined && b.body !== null && typeof b.body !== 'string') {
			return sendJson(res, 400, { error: 'body must be a string (sent as is)' });
		}
		const rule = { path: b.path, method: b.method ?? null, mode: b.mode, times, left: times, used: 0, status,
			retry_after: b.retry_after ?? null, body: b.body ?? null, message: b.message ?? null,
			process: b.mode === 'slow' ? b.process !== false : b.process === true, delay_ms: b.delay_ms ?? 2000 };
		failRules.push(rule);
		return sendJson(res, 200, rule);
	}
	if (req.method === 'POST' && ['/_pay', '/_cancel', '/_expire'].includes(p)) {
		const b = await bodyJson();
		const s = sessions.get(b.session_id);
		if (!s) return sendJson(res, 404, { error: `no session ${JSON.stringify(b.session_id)}` });
		const r = p === '/_pay' ? paySession(s) : cancelSession(s, p === '/_cancel' ? 'cancelled by the buyer'
			: 'expires_at passed');
		if (r.error) return sendJson(res, 400, { error: r.error, session: sessionState(s) });
		return sendJson(res, 200, { session: sessionState(s), event: r.event });
	}
	if (req.method === 'GET' && p === '/_state') {
		expireDue();
		return sendJson(res, 200, {
			sessions: [...sessions.values()].map(sessionState),
			payments: [...payments.values()],
			refunds: [...refunds.values()],
			idempotency_keys: [...idem.keys()],
			posts_without_idempotency_key: postsWithoutKey,
		});
	}
	if (req.method === 'GET' && p === '/_events') {
		const since = Number(q.get('since') ?? 0);
		const fresh = q.get('fresh') === '1';
		const at = new Date();
		return sendJson(res, 200, events.filter((e) => e.seq > since)
			.map((e) => (fresh ? { ...e, headers: signedHeaders(e.id, e.body, at) } : e)));
	}
	if (req.method === 'POST' && p === '/_toss/authorize') {
		const b = await bodyJson();
		if (!validOrderId(b.orderId) || !Number.isInteger(b.amount) || b.amount <= 0) {
			return sendJson(res, 400, { error: 'need {"orderId": 6-64 of [A-Za-z0-9_-], "amount": integer > 0}' });
		}
		return sendJson(res, 200, tossState(tossAuthorize(b.orderId, b.amount, b.reject ?? null)));
	}
	if (req.method === 'GET' && p === '/_toss/state') {
		return sendJson(res, 200, { payments: [...tossPayments.values()].map(tossState) });
	}
	if (req.method === 'GET' && p === '/_toss/events') {
		const since = Number(q.get('since') ?? 0);
		return sendJson(res, 200, tossEvents.filter((e) => e.seq > since));
	}
	if (req.method === 'POST' && p === '/_quit') {
		res.on('finish', () => quit('POST /_quit'));
		return sendJson(res, 200, { bye: true });
	}
	return sendJson(res, 404, { error: `no control ${req.method} ${p}` });
}

const server = http.createServer((req, res) => {
	const url = new URL(req.url, 'http://127.0.0.1');
	const handler = url.pathname.startsWith('/_') ? control(req, res, url) : external(req, res, url);
	handler.catch((e) => {
		process.stderr.write(`mock_provider: ${req.method} ${url.pathname}: ${e.stack}\n`);
		if (!res.headersSent && !res.destroyed) {
			sendJson(res, 500, { error: { type: 'api_error', message: `mock provider bug: ${e.message}` } });
		}
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
server.listen(opts.port, '127.0.0.1', () => {
	let out = `port=${server.address().port}\n`;
	if (generatedSecret) out += `webhook_secret=${opts.webhookSecret}\n`;
	process.stdout.write(out);
});
server.on('error', (e) => quit(`listen: ${e.message}`, 1));
