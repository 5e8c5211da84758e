#!/usr/bin/env node
// Mint an HS256 JWT for shop-httpd (or PostgREST) with Node's crypto HMAC,
// e.g. the operator's token for web/ops.html:
//
//   node demo/mint_token.js --secret-file /var/tmp/shop-demo/jwt.secret \
//        --role shop_operator --sub alice [--ttl 3600]
//
// Prints the token on stdout.  The secret is read from a file (as shop-httpd
// reads it: a trailing newline is ignored), never from the command line.
// The token carries {"role", "sub", "iat", "exp"}; shop-httpd switches to
// "role" and the shop_api functions read the user (here: the operator) from
// "sub".  Treat the token like a password: hand it to the operator page in
// the address's fragment (ops.html#token=...), which browsers never send to
// the server, so it does not reach any log.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');

function usage(msg) {
	if (msg) process.stderr.write(msg + '\n');
	process.stderr.write('usage: node demo/mint_token.js --secret-file FILE --role ROLE --sub NAME [--ttl SECONDS]\n');
	process.exit(msg ? 2 : 0);
}
const opts = { ttl: 3600 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
	const a = argv[i];
	const v = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
	if (a === '--secret-file') opts.secretFile = v();
	else if (a === '--role') opts.role = v();
	else if (a === '--sub') opts.sub = v();
	else if (a === '--ttl') opts.ttl = Number(v());
	else if (a === '--help' || a === '-h') usage();
	else usage(`unknown argument ${a}`);
}
if (!opts.secretFile || !opts.role || !opts.sub) usage('--secret-file, --role and --sub are required');
if (!Number.isInteger(opts.ttl) || opts.ttl <= 0) usage('--ttl must be a positive whole number of seconds');
const secret = fs.readFileSync(opts.secretFile, 'utf8').replace(/\r?\n$/, '');
if (Buffer.byteLength(secret) < 32) usage('the secret must be at least 32 bytes (as shop-httpd requires)');

const b64url = (s) => Buffer.from(s).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
const body = b64url(JSON.stringify({ role: opts.role, sub: opts.sub, iat: now, exp: now + opts.ttl }));
const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
process.stdout.write(`${head}.${body}.${sig}\n`);
