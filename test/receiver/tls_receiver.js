// test/receiver/tls_receiver.js: an https server on 127.0.0.1 with a
// certificate nobody trusts (self-signed), for the test that the delivery
// worker verifies certificates (test/t/015_outbox_worker_life.pl).
//
//   node tls_receiver.js KEY.pem CERT.pem
//
// Listens on a free port and prints "port=N".  It then asks itself for "/"
// without verifying (rejectUnauthorized: false) and prints "selfcheck=200":
// the server works, so a client that refuses it refuses the certificate.
// After that it prints one line per event: "request <method> <url>" for
// each HTTP request that reached it, and "tls-error <code or message>" for
// each TLS handshake a client gave up.  Stops on SIGTERM or when stdin
// closes.
'use strict';
const https = require('https');
const fs = require('fs');

const [keyFile, certFile] = process.argv.slice(2);
const server = https.createServer(
	{ key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) },
	(req, res) => {
		console.log(`request ${req.method} ${req.url}`);
		req.resume();
		req.on('end', () => {
			res.writeHead(200, { 'content-type': 'text/plain' });
			res.end('ok');
		});
	});
server.on('tlsClientError', (err) => {
	console.log(`tls-error ${err.code || err.message}`);
});
server.listen(0, '127.0.0.1', () => {
	const port = server.address().port;
	console.log(`port=${port}`);
	https.get({ host: '127.0.0.1', port, path: '/_selfcheck', rejectUnauthorized: false }, (res) => {
		res.resume();
		console.log(`selfcheck=${res.statusCode}`);
	}).on('error', (err) => console.log(`selfcheck-error ${err.message}`));
});
const stop = () => { server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
