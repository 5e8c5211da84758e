// The hold counter reaches zero and the order expires: shop-httpd connects
// as shop_auth_short, whose sessions have shop.reservation_ttl = 6s
// (fixture.sql); the operator's "Expire now" runs shop_expire_pending; the
// waiting order page then shows the order cancelled as expired.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { psql, operatorToken, startStack, catalogue } = require('./lib');

let stack;
test.before(async () => { stack = await startStack(3, { user: 'shop_auth_short' }); });
test.after(async () => { await stack?.stop(); });

test('the hold counts down to 00:00, the operator expires it, the order page shows expired', async () => {
	const [sku] = catalogue(94000, [{ code: 'EXPIRE-2', on_hand: 2 }]);
	const page = await (await stack.browser.newContext()).newPage();
	await page.goto(stack.url + '/index.html');
	await page.locator(`#products tr[data-sku="${sku}"] button.add`).click();
	await page.waitForFunction(() => /Added EXPIRE-2/.test(document.getElementById('msg').textContent));
	await page.goto(stack.url + '/cart.html');
	await page.locator(`#cart tr[data-sku="${sku}"]`).waitFor();
	await page.locator('#checkout').click();
	await page.waitForURL(/\/pay\/cs_mock_/, { timeout: 15000 });
	const orderId = Number(/order (\d+)/.exec(await page.locator('h1').textContent())[1]);
	assert.strictEqual(psql(`SELECT expires_at - created_at <= interval '6 seconds' FROM shop.orders WHERE id = ${orderId}`), 't');

	await page.goto(`${stack.url}/order.html?id=${orderId}`);
	await page.waitForFunction(() => document.getElementById('status').textContent === 'PENDING');
	const first = await page.locator('#countdown').textContent();
	assert.match(first, /^00:0[0-6]$/);
	await page.waitForFunction(() => document.getElementById('countdown').textContent === '00:00', null, { timeout: 10000 });
	await stack.shot(page, 'order-hold-zero');
	assert.strictEqual(psql(`SELECT reserved FROM shop.sku_stock WHERE sku_id = ${sku}`), '1', 'held until the sweep');

	const ops = await (await stack.browser.newContext()).newPage();
	await ops.goto(stack.url + '/ops.html#token=' + operatorToken('oscar'));
	const resv = ops.locator(`#reservations tr[data-order="${orderId}"]`);
	await resv.waitFor();
	assert.match(await resv.textContent(), /expired/);
	await ops.locator('#expire').click();
	await ops.waitForFunction(() => /order\(s\) released/.test(document.getElementById('expire-result').textContent));
	assert.match(await ops.locator('#expire-result').textContent(), /[1-9]\d* order\(s\) released/);
	// the page shows the count, then reloads its tables: wait for the reload
	// (on a loaded machine the count above can come first)
	await ops.locator(`#reservations tr[data-order="${orderId}"]`).waitFor({ state: 'detached', timeout: 10000 });
	assert.strictEqual(await ops.locator(`#reservations tr[data-order="${orderId}"]`).count(), 0);
	await stack.shot(ops, 'ops-after-expiry');

	await page.waitForFunction(() => document.getElementById('status').textContent === 'CANCELLED', null, { timeout: 10000 });
	assert.match(await page.locator('#explain').textContent(), /hold expired/);
	assert.strictEqual(await page.locator('#reason').textContent(), '(expired)');
	await stack.shot(page, 'order-expired');
	assert.strictEqual(psql(`SELECT on_hand || '/' || reserved FROM shop.sku_stock WHERE sku_id = ${sku}`), '2/0');
	assert.strictEqual(psql('SELECT count(*) FROM shop.shop_check_invariants()'), '0');
});
