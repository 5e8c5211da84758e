// The storefront's and the operator page's shared code: calls to shop-httpd's
// /rpc/<fn> (PostgREST's dialect), the guest token, error messages by SQLSTATE.
// Plain browser JavaScript, no build step, no external resources.
'use strict';

const Shop = (() => {
	const TOKEN_KEY = 'shop.guestToken';

	// A guest token from POST /auth/guest, kept in localStorage.
	async function guestToken() {
		let t = localStorage.getItem(TOKEN_KEY);
		if (t && !expired(t)) return t;
		const r = await fetch('/auth/guest', { method: 'POST' });
		if (!r.ok) throw new Error('could not get a guest token (HTTP ' + r.status + ')');
		t = (await r.json()).token;
		localStorage.setItem(TOKEN_KEY, t);
		return t;
	}
	function expired(token) {
		try {
			const claims = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
			return typeof claims.exp === 'number' && claims.exp * 1000 < Date.now() + 60000;
		} catch (e) { return true; }
	}

	// Call shop_api.<fn>: POST with named arguments (GET for reads when asked).
	// Resolves to the JSON result; rejects with an Error carrying code/details.
	async function rpc(fn, args = {}, { token, get = false } = {}) {
		const headers = { Authorization: 'Bearer ' + (token || await guestToken()) };
		let r;
		if (get) {
			const q = new URLSearchParams(args).toString();
			r = await fetch('/rpc/' + fn + (q ? '?' + q : ''), { headers });
		} else {
			headers['Content-Type'] = 'application/json';
			r = await fetch('/rpc/' + fn, { method: 'POST', headers, body: JSON.stringify(args) });
		}
		if (r.status === 204) return null;
		const text = await r.text();
		let body = null;
		try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
		if (!r.ok) {
			const err = new Error((body && body.message) || ('HTTP ' + r.status));
			err.status = r.status;
			err.code = body && body.code;
			err.details = body && body.details;
			if (r.status === 401 && !token) localStorage.removeItem(TOKEN_KEY);
			throw err;
		}
		return body;
	}

	// What an error means to a shopper, by its SQLSTATE (README, "Errors").
	function explain(err) {
		const avail = /available (-?\d+)/.exec(err.details || '');
		switch (err.code) {
		case 'SH001':
			if (avail && Number(avail[1]) > 0) return `재고 부족 · Only ${avail[1]} left`;
			return '품절 · Not enough stock (sold out)';
		case 'SH002': return '판매 중지 · Not for sale';
		case 'SH003': return '장바구니가 비었습니다 · Your cart is empty';
		case 'SH004': return '주문 상태가 바뀌었습니다 · The order is no longer open for payment';
		case 'SH005': return '통화가 섞였습니다 · The cart mixes currencies';
		case 'SH020': case 'SH021': case 'SH022': case 'SH023':
			return '결제사 오류 · The payment provider could not start the checkout: ' + err.message;
		case 'PT401': return '다시 로그인하세요 · Please sign in again';
		case 'PT404': return '주문이 없습니다 · No such order';
		default: return err.message + (err.code ? ' (' + err.code + ')' : '');
		}
	}

	const ZERO_DECIMAL = new Set(['KRW', 'JPY', 'VND']);
	function money(amount, currency) {
		if (amount === null || amount === undefined) return '';
		const c = String(currency || '').trim().toUpperCase();
		if (ZERO_DECIMAL.has(c)) return Number(amount).toLocaleString('en-US') + ' ' + c;
		return (Number(amount) / 100).toFixed(2) + ' ' + c;
	}

	function availability(n) {
		if (n <= 0) return { text: '품절 · Sold out', cls: 'out' };
		if (n <= 5) return { text: `${n}개 남음 · ${n} left`, cls: 'low' };
		return { text: '재고 있음 · In stock', cls: 'ok' };
	}

	// "mm:ss" until an ISO time (0:00 once it has passed)
	function left(iso) {
		const s = Math.max(0, Math.floor((Date.parse(iso) - Date.now()) / 1000));
		return String(Math.floor(s / 60)).padStart(2, '0') + ':' + String(s % 60).padStart(2, '0');
	}

	// element helper: el('td', {class: 'n'}, 'text', child...)
	function el(tag, attrs = {}, ...kids) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs)) {
			if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
			else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
		}
		for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
		return e;
	}

	function newKey() {
		if (crypto.randomUUID) return 'checkout-' + crypto.randomUUID();
		const b = new Uint8Array(16);
		crypto.getRandomValues(b);
		return 'checkout-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
	}

	return { guestToken, rpc, explain, money, availability, left, el, newKey };
})();
