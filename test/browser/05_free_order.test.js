// A guest takes a free sample (price 0): the order has nothing to pay, so
// checking out sells it directly (shop_api.confirm_free) instead of sending
// the shopper to a provider that would refuse a payment of 0; the order
// page says so, the stock moved, no checkout session was opened.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { psql, startStack } = require('./lib');

let stack;
test.before(async () => { stack = await startStack(4); });
test.after(async () => { await stack?.stop(); });

test('free order: check out a free sample, confirmed without a provider', async () => {
	const sku = 95000;
	psql(`INSERT INTO shop.product (id, name, price) VALUES (${sku}, 'Free sample ${sku}', 0);
		  INSERT INTO shop.sku (id, product_id, code, on_hand) VALUES (${sku}, ${sku}, 'FREE-1', 5);`);
	const page = await (await stack.browser.newContext()).newPage();
	await page.goto(stack.url + '/index.html');
	const row = page.locator(`#products tr[data-sku="${sku}"]`);
	await row.waitFor();
	await row.locator('button.add').click();
	await page.waitForFunction(() => /Added FREE-1/.test(document.getElementById('msg').textContent));
	await page.goto(stack.url + '/cart.html');
	await page.locator(`#cart tr[data-sku="${sku}"]`).waitFor();
	assert.strictEqual((await page.locator('#total').textContent()).trim(), '0 KRW');

	await page.locator('#checkout').click();
	await page.waitForURL(/\/order\.html\?id=\d+$/, { timeout: 15000 });
	const orderId = Number(new URL(page.url()).searchParams.get('id'));
	await page.waitForFunction(() => document.getElementById('status').textContent === 'PAID', null, { timeout: 15000 });
	assert.match(await page.locator('#explain').textContent(), /nothing to pay/);
	await stack.shot(page, 'free-order-confirmed');

	assert.strictEqual(psql(`SELECT status || ' ' || amount || ' ' || coalesce(external_payment_id, '-') FROM shop.orders WHERE id = ${orderId}`), 'PAID 0 -');
	assert.strictEqual(psql(`SELECT count(*) FROM shop.payment_session WHERE order_id = ${orderId}`), '0', 'no provider checkout');
	assert.strictEqual(psql(`SELECT on_hand || '/' || reserved FROM shop.sku_stock WHERE sku_id = ${sku}`), '4/0');
	assert.strictEqual(psql('SELECT count(*) FROM shop.shop_check_invariants()'), '0');
});
