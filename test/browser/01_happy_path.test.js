// A guest browses, adds two SKUs, checks out, pays on the mock provider's
// hosted page, comes back and sees PAID (decided by the provider's signed
// webhook, which the mock POSTs to shop-httpd's /webhooks/mock); the
// operator page shows the stock moved and the webhook event.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { psql, operatorToken, startStack, catalogue } = require('./lib');

let stack;
test.before(async () => { stack = await startStack(0); });
test.after(async () => { await stack?.stop(); });

test('happy path: browse, add two SKUs, pay at the provider, PAID; the operator sees it', async () => {
	const [a, b] = catalogue(91000, [{ code: 'HAPPY-A', on_hand: 8 }, { code: 'HAPPY-B', on_hand: 3 }]);
	const ctx = await stack.browser.newContext();
	const page = await ctx.newPage();
	await page.goto(stack.url + '/index.html');
	const rowA = page.locator(`#products tr[data-sku="${a}"]`);
	await rowA.waitFor();
	assert.match(await rowA.locator('.avail').textContent(), /In stock/);
	assert.match(await page.locator(`#products tr[data-sku="${b}"] .avail`).textContent(), /3 left/);
	await stack.shot(page, 'index');
	await rowA.locator('button.add').click();
	await page.waitForFunction(() => /Added HAPPY-A/.test(document.getElementById('msg').textContent));
	await page.locator(`#products tr[data-sku="${b}"] button.add`).click();
	await page.waitForFunction(() => /Added HAPPY-B/.test(document.getElementById('msg').textContent));

	await page.goto(stack.url + '/cart.html');
	await page.locator(`#cart tr[data-sku="${b}"]`).waitFor();
	await page.locator(`#cart tr[data-sku="${b}"] button.inc`).click();   // B: 2
	await page.waitForFunction((sku) => document.querySelector(`#cart tr[data-sku="${sku}"] .qty`)?.textContent === '2', b);
	assert.strictEqual(await page.locator('#cart tbody tr').count(), 2, 'two lines in the cart');
	assert.strictEqual((await page.locator('#total').textContent()).trim(), '30,000 KRW');
	await stack.shot(page, 'cart');

	await page.locator('#checkout').click();
	await page.waitForURL(/\/pay\/cs_mock_/, { timeout: 15000 });
	assert.match(await page.locator('h1').textContent(), /Checkout for order \d+/);
	await stack.shot(page, 'provider-pay-page');
	const orderId = Number(/order (\d+)/.exec(await page.locator('h1').textContent())[1]);
	await page.locator('button.pay').click();
	await page.waitForURL(new RegExp(`/order\\.html\\?id=${orderId}`));
	await page.waitForFunction(() => document.getElementById('status').textContent === 'PAID', null, { timeout: 20000 });
	assert.match(await page.locator('#explain').textContent(), /Paid/);
	await stack.shot(page, 'order-paid');
	assert.strictEqual(psql(`SELECT status FROM shop.orders WHERE id = ${orderId}`), 'PAID');

	await page.goto(stack.url + '/orders.html');
	const row = page.locator(`#orders tr[data-order="${orderId}"]`);
	await row.waitFor();
	assert.match(await row.locator('.status-cell').textContent(), /PAID/);
	await stack.shot(page, 'orders');

	// the stock moved: A 8 -> 7, B 3 -> 1, nothing held
	assert.strictEqual(psql(`SELECT string_agg(on_hand || '/' || reserved, ' ' ORDER BY sku_id) FROM shop.sku_stock WHERE sku_id IN (${a}, ${b})`), '7/0 1/0');
	assert.strictEqual(psql('SELECT count(*) FROM shop.shop_check_invariants()'), '0');

	// the operator page: token in the fragment, removed from the address
	const ops = await (await stack.browser.newContext()).newPage();
	await ops.goto(stack.url + '/ops.html#token=' + operatorToken('olga'));
	await ops.locator(`#stock tr[data-sku="${a}"]`).waitFor();
	assert.ok(!ops.url().includes('token='), 'the token is taken out of the address');
	assert.strictEqual(await ops.locator(`#stock tr[data-sku="${a}"] .on-hand`).textContent(), '7');
	assert.strictEqual(await ops.locator(`#stock tr[data-sku="${b}"] .on-hand`).textContent(), '1');
	const ev = ops.locator(`#events tr[data-order="${orderId}"]`);
	assert.strictEqual(await ev.count(), 1, 'one webhook event for the order');
	assert.strictEqual(await ev.locator('.type').textContent(), 'payment.succeeded');
	assert.match(await ev.locator('.result').textContent(), /^processed/);
	assert.match(await ops.locator('#health-text').textContent(), /All invariants hold/);
	assert.match(await ops.locator('#chart-caption').textContent(), /[1-9]\d* orders in the last hour, [1-9]\d* paid/);
	assert.ok(await ops.locator('#chart svg rect.paid-bar').count() === 60, 'the chart has a bar per minute');
	// an adjustment through the page, recorded with the operator's name
	const adj = ops.locator(`#stock tr[data-sku="${a}"]`);
	await adj.locator('input[aria-label=delta]').fill('3');
	await adj.locator('input[aria-label=reason]').fill('delivery');
	await adj.locator('button.adjust').click();
	await ops.waitForFunction((sku) => document.querySelector(`#stock tr[data-sku="${sku}"] .on-hand`)?.textContent === '10', a);
	assert.strictEqual(psql(`SELECT reason FROM shop.stock_adjustment WHERE sku_id = ${a} ORDER BY id DESC LIMIT 1`),
		'delivery (operator olga)');
	await stack.shot(ops, 'ops');
	await ctx.close();
});

test('the operator page refuses a shopper and a missing token', async () => {
	const page = await stack.browser.newPage();
	await page.goto(stack.url + '/ops.html');
	await page.waitForFunction(() => /operator token is needed/.test(document.getElementById('msg').textContent));
	// a guest (shopper) token is not an operator token: 403 from the server
	const guest = await (await fetch(stack.url + '/auth/guest', { method: 'POST' })).json();
	await page.goto(stack.url + '/ops.html#token=' + guest.token);
	await page.waitForFunction(() => /operator token is needed/.test(document.getElementById('msg').textContent));
	const r = await fetch(stack.url + '/rpc/ops_stock', { headers: { Authorization: 'Bearer ' + guest.token } });
	assert.strictEqual(r.status, 403);
	await page.close();
});
