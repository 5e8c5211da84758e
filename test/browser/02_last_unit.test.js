// Two shoppers (two browser contexts, two guest tokens) race for the last
// unit: both have it in their carts (a cart holds no stock), both click
// "Check out" at once; exactly one reaches the provider's page, the other
// sees a sold-out message; stock and invariants are right afterwards.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { psql, startStack, catalogue } = require('./lib');

let stack;
test.before(async () => { stack = await startStack(1); });
test.after(async () => { await stack?.stop(); });

test('last unit: two shoppers check out at once, exactly one reaches the provider', async () => {
	const [sku] = catalogue(92000, [{ code: 'LAST-1', on_hand: 1 }]);
	const pages = [];
	for (let i = 0; i < 2; i++) {
		const page = await (await stack.browser.newContext()).newPage();
		await page.goto(stack.url + '/index.html');
		const row = page.locator(`#products tr[data-sku="${sku}"]`);
		await row.waitFor();
		assert.match(await row.locator('.avail').textContent(), /1 left/);
		await row.locator('button.add').click();
		await page.waitForFunction(() => /Added LAST-1/.test(document.getElementById('msg').textContent));
		await page.goto(stack.url + '/cart.html');
		await page.locator(`#cart tr[data-sku="${sku}"]`).waitFor();
		pages.push(page);
	}
	await Promise.all(pages.map((p) => p.locator('#checkout').click()));
	// each ends at the provider's page or with a message on the cart page
	const outcome = await Promise.all(pages.map(async (p) => {
		await p.waitForFunction(() => location.pathname.startsWith('/pay/')
			|| document.getElementById('msg')?.className === 'error', null, { timeout: 15000 });
		return new URL(p.url()).pathname.startsWith('/pay/') ? 'provider' : await p.locator('#msg').textContent();
	}));
	const winners = outcome.filter((o) => o === 'provider');
	const losers = outcome.filter((o) => o !== 'provider');
	assert.strictEqual(winners.length, 1, 'exactly one shopper reaches the provider: ' + JSON.stringify(outcome));
	assert.match(losers[0], /Not enough stock \(sold out\)/, 'the other sees sold out');
	const loser = pages[outcome.indexOf(losers[0])];
	await stack.shot(loser, 'last-unit-sold-out');
	await stack.shot(pages[outcome.indexOf('provider')], 'last-unit-winner-at-provider');
	// one order holds the unit; the catalogue now says sold out
	assert.strictEqual(psql(`SELECT on_hand || '/' || reserved || '/' || available FROM shop.sku_stock WHERE sku_id = ${sku}`), '1/1/0');
	assert.strictEqual(psql(`SELECT count(*) FROM shop.order_item i JOIN shop.orders o ON o.id = i.order_id
		WHERE i.sku_id = ${sku} AND o.status = 'PENDING'`), '1');
	assert.strictEqual(psql('SELECT count(*) FROM shop.shop_check_invariants()'), '0');
	await loser.goto(stack.url + '/index.html');
	await loser.locator(`#products tr[data-sku="${sku}"]`).waitFor();
	assert.match(await loser.locator(`#products tr[data-sku="${sku}"] .avail`).textContent(), /Sold out/);
	assert.ok(await loser.locator(`#products tr[data-sku="${sku}"] button.add`).isDisabled());
});

test('cart: raising a line past the stock shows "only N left" on that line', async () => {
	const [sku] = catalogue(92100, [{ code: 'FEW-2', on_hand: 2 }]);
	const page = await (await stack.browser.newContext()).newPage();
	await page.goto(stack.url + '/index.html');
	await page.locator(`#products tr[data-sku="${sku}"] button.add`).click();
	await page.waitForFunction(() => /Added FEW-2/.test(document.getElementById('msg').textContent));
	await page.goto(stack.url + '/cart.html');
	const line = page.locator(`#cart tr[data-sku="${sku}"]`);
	await line.locator('button.inc').click();
	await page.waitForFunction((s) => document.querySelector(`#cart tr[data-sku="${s}"] .qty`)?.textContent === '2', sku);
	await page.locator(`#cart tr[data-sku="${sku}"] button.inc`).click();
	await page.waitForFunction((s) => /Only 2 left/.test(document.querySelector(`#cart tr[data-sku="${s}"] .line-error`)?.textContent), sku);
	assert.strictEqual(await page.locator(`#cart tr[data-sku="${sku}"] .qty`).textContent(), '2', 'the line stays at 2');
	// a SKU taken off sale: SH002, "not for sale"
	psql(`UPDATE shop.sku SET is_active = false WHERE id = ${sku}`);
	await page.locator(`#cart tr[data-sku="${sku}"] button.dec`).click();
	await page.waitForFunction((s) => /Not for sale/.test(document.querySelector(`#cart tr[data-sku="${s}"] .line-error`)?.textContent), sku);
	await stack.shot(page, 'cart-errors');
});
