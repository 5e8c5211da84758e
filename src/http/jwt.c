/*
 * jwt.c: HS256 JSON Web Tokens (RFC 7519 / RFC 7515), verified and signed
 * with OpenSSL's HMAC-SHA256; JSON with jansson.
 *
 * As PostgREST ("Authentication" docs; errors PGRST301 for a token that
 * cannot be verified, PGRST303 for failed claims such as "JWT expired"):
 * only the configured secret and HS256 are accepted (a token saying
 * "alg": "none" or anything else is refused before its signature is even
 * looked at), the signature is compared in constant time (CRYPTO_memcmp),
 * "exp" and "nbf" are checked with PostgREST's 30 seconds of allowed clock
 * skew (allowedSkewSeconds in its Auth module).
 */
#include "httpd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define JWT_SKEW_SECONDS 30

/* base64url (RFC 4648 section 5, no padding) through OpenSSL's base64 */
static unsigned char *
b64url_decode(const char *in, size_t len, size_t *out_len)
{
	size_t		padded = (len + 3) / 4 * 4;
	char	   *tmp;
	unsigned char *out;
	int			n,
				pad = (int) (padded - len);
	size_t		i;

	if (len % 4 == 1)
		return NULL;
	tmp = malloc(padded + 1);
	out = malloc(padded / 4 * 3 + 1);
	if (!tmp || !out)
	{
		free(tmp);
		free(out);
		return NULL;
	}
	for (i = 0; i < len; i++)
	{
		char		ch = in[i];

		if (ch == '-')
			ch = '+';
		else if (ch == '_')
			ch = '/';
		else if (ch == '+' || ch == '/' || ch == '=')
		{
			free(tmp);
			free(out);
			return NULL;
		}
		tmp[i] = ch;
	}
	for (; i < padded; i++)
		tmp[i] = '=';
	tmp[padded] = '\0';
	n = EVP_DecodeBlock(out, (unsigned char *) tmp, (int) padded);
	free(tmp);
	if (n < 0 || n < pad)
	{
		free(out);
		return NULL;
	}
	*out_len = (size_t) (n - pad);
	out[*out_len] = '\0';
	return out;
}

static char *
b64url_encode(const unsigned char *in, size_t len)
{
	char	   *out = malloc((len + 2) / 3 * 4 + 1);
	int			n;

	if (!out)
		return NULL;
	n = EVP_EncodeBlock((unsigned char *) out, in, (int) len);
	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (int i = 0; i < n; i++)
	{
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return out;
}

static bool
hs256(const char *data, size_t len, unsigned char mac[32])
{
	unsigned int mac_len = 0;

	if (!HMAC(EVP_sha256(), cfg.jwt_secret, (int) cfg.jwt_secret_len,
			  (const unsigned char *) data, len, mac, &mac_len))
		return false;
	return mac_len == 32;
}

const char *
jwt_error_message(JwtResult r)
{
	switch (r)
	{
		case JWT_OK:
			return "";
		case JWT_MALFORMED:
			return "Expected 3 parts in JWT";
		case JWT_BAD_ALG:
			return "Wrong or unsupported encoding algorithm";
		case JWT_BAD_SIGNATURE:
			return "JWT cryptographic operation failed";
		case JWT_EXPIRED:
			return "JWT expired";
		case JWT_NOT_YET_VALID:
			return "JWT not yet valid";
		case JWT_BAD_CLAIMS:
			return "The JWT 'role' claim must be a string";
	}
	return "JWT invalid";
}

static json_t *
decode_json_part(const char *p, size_t len)
{
	size_t		n;
	unsigned char *raw = b64url_decode(p, len, &n);
	json_t	   *j;

	if (!raw)
		return NULL;
	j = json_loadb((const char *) raw, n, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, NULL);
	free(raw);
	if (j && !json_is_object(j))
	{
		json_decref(j);
		return NULL;
	}
	return j;
}

JwtResult
jwt_verify(const char *token, json_t **claims_out)
{
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	json_t	   *header,
			   *claims;
	const char *alg;
	unsigned char mac[32];
	unsigned char *sig;
	size_t		sig_len;
	json_t	   *v;
	double		now = (double) time(NULL);

	*claims_out = NULL;
	if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
		return JWT_MALFORMED;
	header = decode_json_part(token, (size_t) (dot1 - token));
	if (!header)
		return JWT_MALFORMED;
	alg = json_string_value(json_object_get(header, "alg"));
	if (!alg || strcmp(alg, "HS256") != 0)
	{
		json_decref(header);
		return JWT_BAD_ALG;
	}
	json_decref(header);

	sig = b64url_decode(dot2 + 1, strlen(dot2 + 1), &sig_len);
	if (!sig)
		return JWT_MALFORMED;
	if (!hs256(token, (size_t) (dot2 - token), mac) || sig_len != sizeof(mac) ||
		CRYPTO_memcmp(mac, sig, sizeof(mac)) != 0)
	{
		free(sig);
		return JWT_BAD_SIGNATURE;
	}
	free(sig);

	claims = decode_json_part(dot1 + 1, (size_t) (dot2 - dot1 - 1));
	if (!claims)
		return JWT_MALFORMED;
	v = json_object_get(claims, "exp");
	if (v && (!json_is_number(v) || now - JWT_SKEW_SECONDS >= json_number_value(v)))
	{
		JwtResult	res = json_is_number(v) ? JWT_EXPIRED : JWT_BAD_CLAIMS;

		json_decref(claims);
		return res;
	}
	v = json_object_get(claims, "nbf");
	if (v && (!json_is_number(v) || now + JWT_SKEW_SECONDS < json_number_value(v)))
	{
		JwtResult	res = json_is_number(v) ? JWT_NOT_YET_VALID : JWT_BAD_CLAIMS;

		json_decref(claims);
		return res;
	}
	v = json_object_get(claims, "role");
	if (v && (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 63))
	{
		json_decref(claims);
		return JWT_BAD_CLAIMS;
	}
	*claims_out = claims;
	return JWT_OK;
}

char *
jwt_sign(json_t *claims)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char	   *payload = json_dumps(claims, JSON_COMPACT);
	char	   *h64,
			   *p64,
			   *s64,
			   *signing,
			   *token = NULL;
	unsigned char mac[32];
	size_t		len;

	if (!payload)
		return NULL;
	h64 = b64url_encode((const unsigned char *) header, strlen(header));
	p64 = b64url_encode((const unsigned char *) payload, strlen(payload));
	free(payload);
	if (!h64 || !p64)
		goto out;
	len = strlen(h64) + 1 + strlen(p64);
	signing = malloc(len + 1);
	if (!signing)
		goto out;
	snprintf(signing, len + 1, "%s.%s", h64, p64);
	if (hs256(signing, len, mac) && (s64 = b64url_encode(mac, sizeof(mac))) != NULL)
	{
		token = malloc(len + 1 + strlen(s64) + 1);
		if (token)
			sprintf(token, "%s.%s", signing, s64);
		free(s64);
	}
	free(signing);
out:
	free(h64);
	free(p64);
	return token;
}

/*
 * POST /auth/guest: a token for shopping before login, {"token": <HS256 JWT>}
 * with sub "guest:<128 random bits in hex>", role --user-role, exp in 7
 * days.  The SQL side's cart_merge(guest_sub) moves its cart to the account
 * after login.
 */
void
handle_guest(Reply *r)
{
	unsigned char rnd[16];
	char		sub[6 + 32 + 1];
	json_t	   *claims,
			   *o;
	char	   *token;
	time_t		now = time(NULL);

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
	{
		reply_error(r, 500, "PGRSTX00", "no random bytes", NULL, NULL);
		return;
	}
	strcpy(sub, "guest:");
	for (size_t i = 0; i < sizeof(rnd); i++)
		sprintf(sub + 6 + 2 * i, "%02x", rnd[i]);
	claims = json_object();
	json_object_set_new(claims, "sub", json_string(sub));
	json_object_set_new(claims, "role", json_string(cfg.user_role));
	json_object_set_new(claims, "iat", json_integer((json_int_t) now));
	json_object_set_new(claims, "exp", json_integer((json_int_t) now + 7 * 24 * 3600));
	token = jwt_sign(claims);
	json_decref(claims);
	if (!token)
	{
		reply_error(r, 500, "PGRSTX00", "could not sign the token", NULL, NULL);
		return;
	}
	o = json_object();
	json_object_set_new(o, "token", json_string(token));
	free(token);
	reply_json(r, 200, o);
}
