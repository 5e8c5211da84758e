// A double-clicked "Check out" makes one order (one idempotency key per
// checkout attempt); cancelling on the provider's page fails the order (the
// provider's payment.cancelled webhook) and gives the stock back.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { psql, startStack, catalogue } = require('./lib');

let stack;
test.before(async () => { stack = await startStack(2); });
test.after(async () => { await stack?.stop(); });

test('double-clicked checkout makes one order; cancel at the provider gives the stock back', async () => {
	const [sku] = catalogue(93000, [{ code: 'CANCEL-4', on_hand: 4 }]);
	const page = await (await stack.browser.newContext()).newPage();
	await page.goto(stack.url + '/index.html');
	const add = page.locator(`#products tr[data-sku="${sku}"] button.add`);
	await add.click();
	await page.waitForFunction(() => /now 1 in the cart/.test(document.getElementById('msg').textContent));
	await add.click();
	await page.waitForFunction(() => /now 2 in the cart/.test(document.getElementById('msg').textContent));
	await page.goto(stack.url + '/cart.html');
	await page.locator(`#cart tr[data-sku="${sku}"]`).waitFor();
	await page.locator('#checkout').dblclick();
	await page.waitForURL(/\/pay\/cs_mock_/, { timeout: 15000 });
	const orders = psql(`SELECT string_agg(DISTINCT o.id::text, ',') FROM shop.order_item i JOIN shop.orders o ON o.id = i.order_id WHERE i.sku_id = ${sku}`);
	assert.match(orders, /^\d+$/, 'one order for the double click: ' + orders);
	const orderId = Number(orders);
	assert.strictEqual(psql(`SELECT count(*) FROM shop.payment_session WHERE order_id = ${orderId}`), '1', 'one checkout session');
	assert.strictEqual(psql(`SELECT reserved FROM shop.sku_stock WHERE sku_id = ${sku}`), '2');

	await page.locator('button.cancel').click();
	await page.waitForURL(new RegExp(`/order\\.html\\?id=${orderId}`));
	await page.waitForFunction(() => ['CANCELLED', 'FAILED'].includes(document.getElementById('status').textContent),
		null, { timeout: 20000 });
	assert.strictEqual(await page.locator('#status').textContent(), 'FAILED');
	assert.match(await page.locator('#explain').textContent(), /cancelled at the provider/);
	await stack.shot(page, 'order-cancelled');
	assert.strictEqual(psql(`SELECT status || '/' || status_reason FROM shop.orders WHERE id = ${orderId}`), 'FAILED/payment_failed');
	assert.strictEqual(psql(`SELECT on_hand || '/' || reserved FROM shop.sku_stock WHERE sku_id = ${sku}`), '4/0', 'the stock is back');
	assert.strictEqual(psql('SELECT count(*) FROM shop.shop_check_invariants()'), '0');
});

test('the return page never trusts the redirect: a made-up query shows what the shop says', async () => {
	const [sku] = catalogue(93100, [{ code: 'TRUST-1', on_hand: 3 }]);
	const page = await (await stack.browser.newContext()).newPage();
	await page.goto(stack.url + '/index.html');
	await page.locator(`#products tr[data-sku="${sku}"] button.add`).click();
	await page.waitForFunction(() => /Added TRUST-1/.test(document.getElementById('msg').textContent));
	await page.goto(stack.url + '/cart.html');
	await page.locator(`#cart tr[data-sku="${sku}"]`).waitFor();
	await page.locator('#checkout').click();
	await page.waitForURL(/\/pay\/cs_mock_/, { timeout: 15000 });
	const orderId = Number(/order (\d+)/.exec(await page.locator('h1').textContent())[1]);
	// back at the shop without paying, with a forged "success" query
	await page.goto(`${stack.url}/order.html?id=${orderId}&status=PAID&paid=1`);
	await page.waitForFunction(() => document.getElementById('status').textContent !== '');
	assert.strictEqual(await page.locator('#status').textContent(), 'PENDING');
	assert.match(await page.locator('#countdown').textContent(), /^\d\d:\d\d$/);
	assert.ok(await page.locator('#pay-link').isVisible(), 'the open checkout is offered again');
	await stack.shot(page, 'order-pending');
	// another shopper cannot read it
	const other = await (await stack.browser.newContext()).newPage();
	await other.goto(`${stack.url}/order.html?id=${orderId}`);
	await other.waitForFunction(() => /No such order/.test(document.getElementById('explain').textContent));
});
