#!/usr/bin/env node
// Sign a payload the way Stripe does, with the official `stripe` npm package
// (stripe.webhooks.generateTestHeaderString): someone else's signer for our
// Stripe webhook verification (test/t/020_stripe_official_signer.pl).
//
//   node stripe_sign.js SECRET [TIMESTAMP]  < payload
//
// Prints the Stripe-Signature header value.
'use strict';
const Stripe = require('stripe');

const [secret, timestamp] = process.argv.slice(2);
if (!secret) {
	process.stderr.write('usage: stripe_sign.js SECRET [TIMESTAMP] < payload\n');
	process.exit(2);
}
let payload = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { payload += chunk; });
process.stdin.on('end', () => {
	const stripe = new Stripe('sk_test_unused');
	const header = stripe.webhooks.generateTestHeaderString({
		payload,
		secret,
		timestamp: timestamp ? Number(timestamp) : Math.floor(Date.now() / 1000),
	});
	process.stdout.write(header);
});
